"""`dr restore --location URI`: a backed-up table restored under another warehouse root, its paths rewritten.

Iceberg files name each other by absolute path, so moving a table means rewriting every file that holds a path,
bottom-up, from the backup's copies (the originals may be gone): position-delete files (Parquet: the `file_path`
column), deletion vectors (Puffin: each blob's `referenced-data-file` in the footer; the blobs keep their offsets),
then manifests (Avro: `file_path`, `referenced_data_file`, the rewritten deletes' sizes, and the bounds of the
position deletes' `file_path` column — left old, a reader would prune those deletes away from the moved data
files and resurrect deleted rows), then manifest lists (`manifest_path`, `manifest_length`), then the metadata
JSON (every string that starts with the old prefix). Data, equality-delete and statistics files are copied as
they are. Snapshot ids, sequence numbers and history stay the backup's, so the change stream's positions hold.

This is what Iceberg's `rewrite_table_path` procedure does; it is done here because that procedure needs a
loadable source table and mishandles position deletes (iceberg#12586, #16662, #17498).
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

from icetide.errors import ConfigError

from batch.dr_store import FileEntry, open_target

if TYPE_CHECKING:
    from pyiceberg.io import FileIO

OpenCopy = Callable[[str], AbstractContextManager[IO[bytes]]]
PUFFIN_MAGIC = b"PFA1"
POSITION_DELETE_PATH_FIELD = 2147483546  # the reserved field id of a position delete's `file_path`


@dataclass
class Relocation:
    """Old prefix → new prefix, and what each rewritten file became (its new location, size)."""

    old: str
    new: str
    sizes: dict[str, int] = field(default_factory=dict)  # new location → size, of every file written
    rewritten: int = 0

    def _rest(self, location: str) -> str | None:
        """What follows the old prefix in `location` (Hadoop writes `file:/p` for `file:///p`: both match)."""
        olds = [self.old]
        if self.old.startswith("file:///"):
            olds.append("file:/" + self.old[len("file:///"):])
        for old in olds:
            if location.startswith(old):
                return location[len(old):]
        return None

    def path(self, location: str) -> str:
        rest = self._rest(location)
        if rest is None:
            raise ConfigError(f"{location} is not under the backed-up warehouse {self.old}: cannot relocate it")
        return self.new + rest

    def maybe(self, value: str) -> str:
        rest = self._rest(value)
        return value if rest is None else self.new + rest


def _prefix(uri: str) -> str:
    return uri.rstrip("/") + "/"


def _write(file_io: FileIO, location: str, data: bytes) -> None:
    with open_target(file_io, location) as out:
        out.write(data)


def _position_deletes(data: bytes, moved: Relocation) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(io.BytesIO(data))
    index = table.schema.get_field_index("file_path")
    column = pa.array([moved.path(p) for p in table.column(index).to_pylist()], type=table.schema.field(index).type)
    table = table.set_column(index, table.schema.field(index), column)
    out = io.BytesIO()
    pq.write_table(table, out, compression="zstd")
    return out.getvalue()


def _puffin(data: bytes, moved: Relocation) -> bytes:
    """The footer rewritten (blob properties' paths); blobs stay at their offsets, so manifests' offsets hold."""
    if data[:4] != PUFFIN_MAGIC or data[-4:] != PUFFIN_MAGIC:
        raise ConfigError("not a Puffin file")
    payload_size, flags = struct.unpack("<ii", data[-12:-4])
    if flags & 1:
        raise ConfigError("a compressed Puffin footer is not supported")
    start = len(data) - 12 - payload_size
    footer = json.loads(data[start:-12])
    for blob in footer.get("blobs", []):
        props = blob.get("properties", {})
        if "referenced-data-file" in props:
            props["referenced-data-file"] = moved.path(props["referenced-data-file"])
    payload = json.dumps(footer, separators=(",", ":")).encode()
    # the footer's own magic sits just before its payload
    return data[: start] + payload + struct.pack("<ii", len(payload), flags) + PUFFIN_MAGIC


def _avro(data: bytes, change: Callable[[dict[str, Any]], None]) -> bytes:
    """The Avro file with `change` applied to each record; schema, codec and header metadata kept."""
    import fastavro

    reader = fastavro.reader(io.BytesIO(data))
    schema, codec = reader.writer_schema, reader.codec
    metadata = {k: v for k, v in reader.metadata.items() if not k.startswith("avro.")}
    records = []
    for record in reader:
        change(record)  # type: ignore[arg-type]
        records.append(record)
    out = io.BytesIO()
    fastavro.writer(out, fastavro.parse_schema(schema), records, codec=codec, metadata=metadata)
    return out.getvalue()


def _manifest_entry(record: dict[str, Any], moved: Relocation) -> None:
    data_file = record["data_file"]
    old_path = data_file["file_path"]
    data_file["file_path"] = moved.path(old_path)
    if data_file.get("referenced_data_file"):
        data_file["referenced_data_file"] = moved.path(data_file["referenced_data_file"])
    if data_file["file_path"] in moved.sizes:
        data_file["file_size_in_bytes"] = moved.sizes[data_file["file_path"]]
    if data_file.get("content") == 1:  # position deletes: their file_path column's bounds name data files
        for bounds in ("lower_bounds", "upper_bounds"):
            for pair in data_file.get(bounds) or []:
                if pair["key"] == POSITION_DELETE_PATH_FIELD:
                    pair["value"] = moved.maybe(pair["value"].decode()).encode()


def _manifest_list_entry(record: dict[str, Any], moved: Relocation) -> None:
    record["manifest_path"] = moved.path(record["manifest_path"])
    record["manifest_length"] = moved.sizes[record["manifest_path"]]


def _metadata(data: bytes, moved: Relocation) -> bytes:
    def walk(value: Any) -> Any:
        if isinstance(value, str):
            return moved.maybe(value)
        if isinstance(value, list):
            return [walk(v) for v in value]
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        return value

    return json.dumps(walk(json.loads(data)), indent=2).encode()


def relocated_location(location: str, old_warehouse: str, new_warehouse: str) -> str:
    """Where the file at `location` goes when its warehouse moves (refused if it is not under it)."""
    return Relocation(_prefix(old_warehouse), _prefix(new_warehouse)).path(location)


ORDER = ("data", "statistics", "delete", "manifest", "manifest-list", "metadata")  # a file before those naming it


def relocate_table(file_io: FileIO, open_copy: OpenCopy, files: list[FileEntry], old_warehouse: str,
                   new_warehouse: str, metadata_location: str) -> dict[str, Any]:
    """Write the table's files under `new_warehouse`, rewritten where they hold paths; returns the new metadata
    location and {location: (size, sha256)} of every file written. The copies were checked against the
    manifest before (`BackupStore.check`, as every restore does)."""
    moved = Relocation(_prefix(old_warehouse), _prefix(new_warehouse))
    written: dict[str, tuple[int, str]] = {}
    for entry in sorted(files, key=lambda e: ORDER.index(e.kind)):
        with open_copy(entry.path) as source:
            data = source.read()
        target = moved.path(entry.path)
        if entry.kind == "delete" and data[:4] == PUFFIN_MAGIC:
            data = _puffin(data, moved)
        elif entry.kind == "delete" and data[:4] == b"PAR1" and _has_file_path(data):
            data = _position_deletes(data, moved)
        elif entry.kind == "manifest":
            data = _avro(data, lambda r: _manifest_entry(r, moved))
        elif entry.kind == "manifest-list":
            data = _avro(data, lambda r: _manifest_list_entry(r, moved))
        elif entry.kind == "metadata":
            data = _metadata(data, moved)
        _write(file_io, target, data)
        moved.sizes[target] = len(data)
        written[target] = (len(data), hashlib.sha256(data).hexdigest())
    return {"metadata_location": moved.path(metadata_location), "files": written}


def _has_file_path(data: bytes) -> bool:
    import pyarrow.parquet as pq

    return "file_path" in pq.read_schema(io.BytesIO(data)).names
