"""Find the suite's secrets in its logs and error outputs.

Secrets are read generically from every regular file the stack wrote readable by its owner only (mode 0600)
under the scanned roots — the object store's key-encryption key and credentials, the REST catalog's config,
Kafka's SCRAM passwords, TLS keys, PostgreSQL passwords — so a new secret file is covered without a change
here. From each: a one-line file is one secret; `key = value` / `key: value` lines and JSON give the values of
keys that name a secret (password, secret, token, kek, credential, private); `password="…"` inside a value (a
JAAS line) too; a PEM key gives its base64 lines. Values shorter than MIN_LEN are ignored (not secrets).

Logs: every text file under the roots that is not itself a secret file and not table or broker data (Kafka
segments, Iceberg data and metadata, the object store's volumes), plus extra files (the captured test output).
"""

from __future__ import annotations

import json
import re
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

MIN_LEN = 8
MAX_LOG_BYTES = 256 * 1024 * 1024
SECRET_KEY = re.compile(r"secret|passw|token|kek|credential|private", re.IGNORECASE)
INLINE = re.compile(r"""(?:password|secret|token)\s*=\s*["']([^"']+)["']""", re.IGNORECASE)
ASSIGN = re.compile(r"^\s*([A-Za-z0-9_.\-\[\]]+)\s*[=:]\s*(.+?)\s*$")
LOG_SUFFIXES = {".log", ".out", ".err", ".txt", ".stdout", ".stderr"}
DATA_PARTS = {"warehouse", "data"}  # Iceberg tables, the object store's volumes


@dataclass(frozen=True)
class Leak:
    log: Path
    secret_file: Path

    def __str__(self) -> str:  # never the secret itself
        return f"{self.log}: contains a secret from {self.secret_file}"


def owner_only(path: Path) -> bool:
    try:
        mode = path.lstat().st_mode
    except OSError:
        return False
    return stat.S_ISREG(mode) and mode & 0o077 == 0 and mode & 0o600 == 0o600


def _json_values(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, str) and SECRET_KEY.search(str(key)):
                yield value
            else:
                yield from _json_values(value)
    elif isinstance(node, list):
        for item in node:
            yield from _json_values(item)


def secrets_in(path: Path) -> set[str]:
    """The secret values in one secret file (see the module doc)."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError):
        return set()  # binary (a PKCS#12 store): its password is in its own file
    found: set[str] = set()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    try:
        parsed: object = json.loads(text)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict | list):
        found |= set(_json_values(parsed))
    elif "-----BEGIN" in text:
        found |= {line for line in lines if not line.startswith("-----") and len(line) >= 40}
    elif len(lines) == 1 and not ASSIGN.match(lines[0]):
        found.add(lines[0])
    else:
        for line in lines:
            match = ASSIGN.match(line)
            if match and SECRET_KEY.search(match.group(1)):
                found.add(match.group(2).strip().strip("\"'"))
            found |= set(INLINE.findall(line))
    return {s for s in found if len(s) >= MIN_LEN and not _names_a_file(s)}


def _names_a_file(value: str) -> bool:
    """`file.password-file=/…/password.db`: a key that names a secret's file, its value a path (logged by the
    servers that read it), not the secret itself — the file is scanned on its own when it is owner-only."""
    return value.startswith(("/", "file:/")) and not any(c.isspace() for c in value)


def collect_secrets(roots: Iterable[Path]) -> dict[str, Path]:
    """Each secret value of the owner-only files under `roots` → the file it came from."""
    out: dict[str, Path] = {}
    for root in roots:
        if not root.is_dir():
            continue
        for path in root.rglob("*"):
            if owner_only(path):
                for value in secrets_in(path):
                    out.setdefault(value, path)
    return out


def _is_data(path: Path) -> bool:
    if DATA_PARTS & set(path.parts):
        return True
    return path.suffix == ".log" and path.stem.isdigit()  # a Kafka log segment


def log_files(roots: Iterable[Path], since: float = 0.0) -> Iterator[Path]:
    for root in roots:
        if not root.is_dir():
            continue
        for path in root.rglob("*"):
            try:
                info = path.lstat()
            except OSError:
                continue
            if (stat.S_ISREG(info.st_mode) and info.st_mtime >= since and info.st_size <= MAX_LOG_BYTES
                    and (path.suffix in LOG_SUFFIXES or "log" in path.name.lower()) and not owner_only(path)
                    and not _is_data(path.relative_to(root))):
                yield path


def scan(secret_roots: Iterable[Path], log_roots: Iterable[Path], extra_logs: Iterable[Path] = (),
         since: float = 0.0) -> list[Leak]:
    """Every (log, secret file) pair where the log contains one of that file's secrets."""
    secrets = {value.encode(): source for value, source in collect_secrets(secret_roots).items()}
    leaks: list[Leak] = []
    if not secrets:
        return leaks
    for log in [*log_files(log_roots, since), *extra_logs]:
        try:
            body = log.read_bytes()
        except OSError:
            continue
        leaks += [Leak(log, source) for source in {src for value, src in secrets.items() if value in body}]
    return leaks
