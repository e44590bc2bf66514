"""Reading rows of data files with their positions, and which positions delete files kill.

Data files are read record batch by record batch through PyIceberg's Arrow reader (projection by
field id onto the snapshot's schema, so old files read after `ADD COLUMN` get nulls), without
PyIceberg applying any deletes: the changelog needs the row positions to apply them itself, in
the state before and after a snapshot. Position deletes (and v3 deletion vectors) are read with
PyIceberg's delete reader; equality deletes as a set of value tuples. Both are cached per delete
file (they are small next to the data they delete).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from streaming.files import EQUALITY_DELETES, POSITION_DELETES, FileRef

if TYPE_CHECKING:
    import pyarrow as pa
    from pyiceberg.io import FileIO
    from pyiceberg.schema import Schema
    from pyiceberg.table.metadata import TableMetadata

EqualityKill = tuple[tuple[str, ...], frozenset[tuple[Any, ...]]]


class Kills:
    """Positions killed in one data file by a set of delete files."""

    def __init__(self, positions: frozenset[int], equality: list[EqualityKill]) -> None:
        self.positions = positions
        self.equality = equality

    def killed(self, position: int, row: dict[str, Any]) -> bool:
        if position in self.positions:
            return True
        return any(tuple(row.get(n) for n in names) in values for names, values in self.equality)

    @property
    def empty(self) -> bool:
        return not self.positions and not self.equality


class FileReader:
    """Reads data rows and delete files of one table, projected onto one schema."""

    def __init__(self, metadata: TableMetadata, io: FileIO, schema: Schema, batch_rows: int = 8192) -> None:
        self._metadata = metadata
        self._io = io
        self._schema = schema
        self._batch_rows = batch_rows
        self._positions: dict[str, dict[str, frozenset[int]]] = {}
        self._equality: dict[str, EqualityKill] = {}

    def _scan(self, schema: Schema) -> Any:
        from pyiceberg.expressions import AlwaysTrue
        from pyiceberg.io.pyarrow import ArrowScan

        return ArrowScan(self._metadata, self._io, schema, AlwaysTrue())

    def batches(self, ref: FileRef, schema: Schema | None = None) -> Iterator[tuple[int, pa.RecordBatch]]:
        """(first position, batch) for every record batch of a data file, in file order."""
        from pyiceberg.table import FileScanTask

        scan = self._scan(schema or self._schema)
        position = 0
        # The per-task generator streams batch by batch (the public to_record_batches materializes
        # a whole file per task); no delete files are passed, so positions are consecutive.
        for batch in scan._record_batches_from_scan_tasks_and_deletes([FileScanTask(ref.raw)], {}):
            for offset in range(0, batch.num_rows, self._batch_rows):
                chunk = batch.slice(offset, self._batch_rows)
                yield position, chunk
                position += chunk.num_rows

    def rows(self, ref: FileRef) -> Iterator[tuple[int, dict[str, Any]]]:
        """(position, row as Python values) of every row of a data file."""
        for start, batch in self.batches(ref):
            for offset, row in enumerate(batch.to_pylist()):
                yield start + offset, row

    def kills(self, data: FileRef, deletes: Iterable[FileRef]) -> Kills:
        """What `deletes` (already filtered by the sequence-number rules) kill in `data`."""
        positions: set[int] = set()
        equality: list[EqualityKill] = []
        for delete in deletes:
            if delete.content == POSITION_DELETES:
                positions.update(self._position_deletes(delete).get(data.path, frozenset()))
            elif delete.content == EQUALITY_DELETES:
                equality.append(self._equality_deletes(delete))
        return Kills(frozenset(positions), equality)

    def _position_deletes(self, delete: FileRef) -> dict[str, frozenset[int]]:
        cached = self._positions.get(delete.path)
        if cached is None:
            from pyiceberg.io.pyarrow import _read_deletes

            cached = {
                path: frozenset(int(p) for p in positions.to_pylist())
                for path, positions in _read_deletes(self._io, delete.raw).items()
            }
            self._positions[delete.path] = cached
        return cached

    def _equality_deletes(self, delete: FileRef) -> EqualityKill:
        cached = self._equality.get(delete.path)
        if cached is None:
            from pyiceberg.schema import Schema
            from pyiceberg.table import FileScanTask

            fields = [self._metadata.schema().find_field(field_id) for field_id in delete.equality_ids]
            names = tuple(f.name for f in fields)
            scan = self._scan(Schema(*fields))
            values: set[tuple[Any, ...]] = set()
            for batch in scan._record_batches_from_scan_tasks_and_deletes([FileScanTask(delete.raw)], {}):
                values.update(tuple(row[n] for n in names) for row in batch.to_pylist())
            cached = (names, frozenset(values))
            self._equality[delete.path] = cached
        return cached

    def referenced_paths(self, delete: FileRef) -> frozenset[str]:
        """Data files a position delete file names (all files for an equality delete: unknown)."""
        if delete.content != POSITION_DELETES:
            return frozenset()
        if delete.referenced_file is not None:
            return frozenset({delete.referenced_file})
        return frozenset(self._position_deletes(delete))
