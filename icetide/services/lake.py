"""The lake's services as the stack composes them: the object store and the REST catalog the settings ask for.

`storage.kind: s3` without `storage.endpoint` → the embedded object store (`object_store`);
`catalog.type: rest` without `catalog.uri` → the embedded REST catalog server (`rest_catalog`), started
after the store (its FileIO writes there). `stop_all` stops whatever runs from a state dir, whatever
the settings say now; `describe` is the `catalog` and `storage` parts of `icetide stack status`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from icetide.services.identities import user_name
from icetide.services.object_store import ObjectStore
from icetide.services.rest_catalog import RestCatalogServer
from icetide.storage import roles, uses_embedded_store

if TYPE_CHECKING:
    from icetide.settings import Settings


def wanted(settings: Settings) -> list[ObjectStore | RestCatalogServer]:
    """The embedded lake services the settings ask for, in start order."""
    services: list[ObjectStore | RestCatalogServer] = []
    if uses_embedded_store(settings):
        services.append(ObjectStore())
    if settings.catalog.type == "rest" and not settings.catalog.uri:
        services.append(RestCatalogServer())
    return services


def start(settings: Settings) -> dict[str, dict[str, str]]:
    """Start (or reuse) each wanted service; their endpoints by service name."""
    return {service.name: dict(service.start(settings, settings.state_dir)) for service in wanted(settings)}


def stop_all(state_dir: Path) -> list[str]:
    """Stop every lake service running from `state_dir` (REST catalog first); the names of those stopped."""
    return [s.name for s in (RestCatalogServer(state_dir), ObjectStore(state_dir)) if s.stop()]


def describe(settings: Settings) -> dict[str, dict[str, Any]]:
    """What `stack status` reports: the catalog (type, uri) and the storage (kind, endpoint, bucket, data dir)."""
    catalog: dict[str, Any] = {"type": settings.catalog.type, "uri": settings.catalog_uri or None,
                               "embedded": False}
    if settings.catalog.type == "rest" and not settings.catalog.uri:
        server = RestCatalogServer(settings.state_dir).status()
        catalog |= {"uri": server["uri"], "embedded": True, "running": server["running"], "pid": server["pid"],
                    "backing_catalog": server["backing_catalog"], "log_file": server["log_file"]}
    storage: dict[str, Any] = {"kind": settings.storage.kind}
    if settings.storage.kind == "local":
        warehouse = urlparse(settings.warehouse)
        storage |= {"endpoint": None, "bucket": None,
                    "data_dir": warehouse.path if warehouse.scheme in ("", "file") else None}
    else:
        storage |= {"endpoint": settings.storage.endpoint, "bucket": settings.storage.bucket,
                    "region": settings.storage.region, "sse": settings.storage.sse, "data_dir": None,
                    "embedded": uses_embedded_store(settings)}
        if uses_embedded_store(settings):
            store = ObjectStore(settings.state_dir).status()
            storage |= {"endpoint": store["endpoint"], "data_dir": store["data_dir"], "kek_file": store["kek_file"],
                        "running": store["running"], "pid": store["pid"], "log_file": store["log_file"],
                        "access_log": store["access_log"]["log_file"],
                        "identities": [user_name(r) for r in roles()]}
    return {"catalog": catalog, "storage": storage}
