"""Fail when an installed distribution differs from its pin in pyproject.toml.

pip can silently resolve an older release (pyiceberg falling back to 0.8.x is the known trap).
"""

from __future__ import annotations

import sys
import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

project = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())["project"]
pins = [*project["dependencies"], *project["optional-dependencies"]["dev"]]
wrong = []
for pin in pins:
    name, _, wanted = pin.partition("==")
    name = name.split("[")[0]
    try:
        got = version(name)
    except PackageNotFoundError:
        got = "missing"
    if got != wanted:
        wrong.append(f"{name}: pinned {wanted}, installed {got}")
if wrong:
    print("error: resolved versions differ from the pins:\n  " + "\n  ".join(wrong), file=sys.stderr)
    sys.exit(1)
print(f"pins ok: {len(pins)} direct dependencies at their pinned versions")
