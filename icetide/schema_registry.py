"""A small client for Confluent-compatible schema registries (Confluent, Apicurio's ccompat API, …).

Only what change events need: register a subject's schema (→ id) and fetch a schema by id, both
cached. Network failures are transient (retry); a rejected schema is terminal.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from icetide.errors import EventError, TransientError

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


class SchemaRegistryClient:
    def __init__(self, url: str, timeout_s: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self._ids: dict[tuple[str, str], int] = {}
        self._schemas: dict[int, dict[str, Any]] = {}

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.url}{path}", data=data, method=method,
                                         headers={"Content-Type": CONTENT_TYPE, "Accept": CONTENT_TYPE})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:300]
            if exc.code >= 500:
                raise TransientError(f"schema registry {method} {path}: HTTP {exc.code}: {detail}") from None
            raise EventError(f"schema registry {method} {path}: HTTP {exc.code}: {detail}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            raise TransientError(f"schema registry unreachable at {self.url}: {exc}") from None

    def register(self, subject: str, schema: dict[str, Any]) -> int:
        """Register `schema` under `subject` (idempotent) and return its global id."""
        text = json.dumps(schema, sort_keys=True, separators=(",", ":"))
        cached = self._ids.get((subject, text))
        if cached is not None:
            return cached
        quoted = urllib.parse.quote(subject, safe="")
        try:
            answer = self._call("POST", f"/subjects/{quoted}/versions", {"schema": text, "schemaType": "AVRO"})
        except EventError as exc:
            if "HTTP 409" not in str(exc):
                raise
            raise EventError(f"{exc}: the registry rejects the schema as incompatible with the latest version of "
                             f"{subject} (e.g. a timestamptz column registered by an older icetide as long); allow "
                             f"it for the subject (PUT /config/{quoted} {{\"compatibility\": \"NONE\"}}) or use a "
                             "new topic prefix: docs/encodings.md") from None
        schema_id = int(answer["id"])
        self._ids[(subject, text)] = schema_id
        self._schemas[schema_id] = schema
        return schema_id

    def subjects(self) -> list[str]:
        """Every registered subject (also a cheap check that the registry answers)."""
        return [str(name) for name in self._call("GET", "/subjects")]

    def schema(self, schema_id: int) -> dict[str, Any]:
        """The Avro schema registered under `schema_id`."""
        if schema_id not in self._schemas:
            answer = self._call("GET", f"/schemas/ids/{schema_id}")
            self._schemas[schema_id] = json.loads(answer["schema"])
        return self._schemas[schema_id]
