"""Secret keys for `hash` masks: read from an environment variable or a secret file.

Rotation: declare a new key id, point the masks at it; the views record the key id they use.
A key must be at least 16 bytes. Keys never appear in messages.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from policies.model import KeySource, Policy

MIN_KEY_BYTES = 16
_BLOCK = 64


@dataclass(frozen=True)
class HmacPads:
    """HMAC-SHA256 split into its two padded keys, so SQL engines can compute it with sha256."""

    key_id: str
    key: bytes

    @property
    def block_key(self) -> bytes:
        k = hashlib.sha256(self.key).digest() if len(self.key) > _BLOCK else self.key
        return k.ljust(_BLOCK, b"\x00")

    @property
    def ipad(self) -> bytes:
        return bytes(b ^ 0x36 for b in self.block_key)

    @property
    def opad(self) -> bytes:
        return bytes(b ^ 0x5C for b in self.block_key)


def read_key(source: KeySource, environ: Mapping[str, str] | None = None) -> HmacPads:
    """Load one key; a missing or short key is a PolicyError at the key's declaration."""
    env = os.environ if environ is None else environ
    raw: bytes | None = None
    if source.env is not None:
        value = env.get(source.env)
        raw = value.encode() if value else None
        where = f"environment variable {source.env}"
    else:
        path = Path(str(source.file)).expanduser()
        where = f"secret file {path}"
        try:
            raw = path.read_bytes().strip()
        except OSError:
            raw = None
    if not raw:
        raise source.pos.error(f"key {source.id!r}: {where} is not set or empty")
    if len(raw) < MIN_KEY_BYTES:
        raise source.pos.error(f"key {source.id!r}: {where} holds fewer than {MIN_KEY_BYTES} bytes")
    return HmacPads(source.id, raw)


def default_key_id(policy: Policy) -> str | None:
    """The key used by `hash` masks that name none: the only key, or the last one declared."""
    return list(policy.keys)[-1] if policy.keys else None


def load_keys(policy: Policy, environ: Mapping[str, str] | None = None) -> dict[str, HmacPads]:
    """Every key the policy declares (compile needs them to render `hash` masks)."""
    return {kid: read_key(src, environ) for kid, src in policy.keys.items()}
