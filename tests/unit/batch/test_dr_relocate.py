"""The path rewriting of `dr restore --location` on its own: prefixes (both spellings of a local file URI),
refusal of a path outside the backed-up warehouse, and a Puffin footer rewritten with its blobs in place."""

from __future__ import annotations

import json
import struct

import pytest

from batch.dr_relocate import PUFFIN_MAGIC, Relocation, _puffin, relocated_location
from icetide.errors import ConfigError

pytestmark = pytest.mark.unit


def test_paths_move_under_the_new_root_in_either_local_spelling() -> None:
    moved = Relocation("file:///old/wh/", "s3://site/wh/")
    assert moved.path("file:///old/wh/ns/t/data/a.parquet") == "s3://site/wh/ns/t/data/a.parquet"
    assert moved.path("file:/old/wh/ns/t/data/a.parquet") == "s3://site/wh/ns/t/data/a.parquet"  # Hadoop's spelling
    assert moved.maybe("file:///elsewhere/x") == "file:///elsewhere/x" and moved.maybe("snappy") == "snappy"
    with pytest.raises(ConfigError, match="file:///old/whx/a is not under the backed-up warehouse file:///old/wh/"):
        moved.path("file:///old/whx/a")  # a sibling that shares the prefix's text is not under it
    assert relocated_location("file:///old/wh/ns/t/metadata/v3.metadata.json", "file:///old/wh",
                              "file:///new") == "file:///new/ns/t/metadata/v3.metadata.json"


def _puffin_file(blobs: list[bytes], referenced: list[str]) -> bytes:
    body, metas, offset = b"", [], 4
    for blob, ref in zip(blobs, referenced, strict=True):
        metas.append({"type": "deletion-vector-v1", "fields": [2147483645], "snapshot-id": -1,
                      "sequence-number": -1, "offset": offset, "length": len(blob),
                      "properties": {"referenced-data-file": ref, "cardinality": "3"}})
        body, offset = body + blob, offset + len(blob)
    payload = json.dumps({"blobs": metas, "properties": {"created-by": "test"}}).encode()
    return PUFFIN_MAGIC + body + PUFFIN_MAGIC + payload + struct.pack("<ii", len(payload), 0) + PUFFIN_MAGIC


def test_a_puffin_footer_names_the_moved_data_files_and_its_blobs_stay_at_their_offsets() -> None:
    blobs = [b"\x01blob-one\x02" * 3, b"\x03blob-two"]
    old = _puffin_file(blobs, ["file:/old/wh/ns/t/data/a.parquet", "file:///old/wh/ns/t/data/b.parquet"])
    new = _puffin(old, Relocation("file:///old/wh/", "file:///new/wh/"))
    assert new[:4] == PUFFIN_MAGIC and new[-4:] == PUFFIN_MAGIC
    size, flags = struct.unpack("<ii", new[-12:-4])
    footer = json.loads(new[len(new) - 12 - size:-12])
    assert new[len(new) - 16 - size:len(new) - 12 - size] == PUFFIN_MAGIC and flags == 0
    assert [b["properties"]["referenced-data-file"] for b in footer["blobs"]] == [
        "file:///new/wh/ns/t/data/a.parquet", "file:///new/wh/ns/t/data/b.parquet"]
    for meta, blob in zip(footer["blobs"], blobs, strict=True):  # the manifests' content_offset still holds
        assert new[meta["offset"]:meta["offset"] + meta["length"]] == blob
    with pytest.raises(ConfigError, match="not a Puffin file"):
        _puffin(b"PAR1" + old[4:], Relocation("file:///old/wh/", "file:///new/wh/"))
