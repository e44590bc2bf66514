"""What every benchmark does last: print its JSON document, and write it to `--out` when given."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def emit(document: dict[str, Any], out: Path | None) -> None:
    text = json.dumps(document, indent=2)
    print(text)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
