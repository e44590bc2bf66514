"""Prometheus helpers: every service registers its metrics on its own registry.

Each room keeps its metric definitions in a `metrics.py` beside the code that owns them and
builds them on a registry from `new_registry()`; `serve()` exposes one registry on /metrics.
"""

from __future__ import annotations

import atexit
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, start_http_server

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

# Latency buckets in seconds, from 5 ms to 10 min (commit→apply spans both).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600)


def new_registry() -> CollectorRegistry:
    return CollectorRegistry(auto_describe=True)


def serve(registry: CollectorRegistry, host: str = "127.0.0.1", port: int = 0) -> tuple[WSGIServer, int]:
    """Serve `registry` on http://host:port/metrics (port 0 → a free one); returns (server, port)."""
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return server, int(server.server_port)


# -- self-registration for the embedded Prometheus (file_sd) ------------------------------------------
# A process serving /metrics writes `<state_dir>/monitoring/targets/<job>/<pid>-<port>.json` (Prometheus'
# file_sd format) and removes it when it stops cleanly; the embedded Prometheus watches those folders
# (icetide/services/monitoring.py), so whatever runs from a state dir is scraped without configuration.
# A process that dies without cleaning up leaves its file: its target goes `up == 0` (IcetideProcessDown).
# The JVMs' jobs: `kafka` (the broker's JMX exporter agent), `flink` (the CDC job's Flink Prometheus reporter),
# `spark` (every Spark driver's JMX exporter agent), `object-store` (SeaweedFS's own /metrics) and `trino` (the
# embedded Trino's /metrics: HTTPS and a password, so its job carries its own scrape settings).
JOBS = ("icetide-cdc", "icetide-consumer", "icetide-table-health", "icetide-kafka-lag", "icetide-dr", "kafka", "flink",
        "spark", "object-store", "trino")


def targets_dir(state_dir: Path, job: str) -> Path:
    if job not in JOBS:
        raise ValueError(f"unknown scrape job {job!r} (one of {', '.join(JOBS)})")
    return Path(state_dir).expanduser().resolve() / "monitoring" / "targets" / job


def register_target(state_dir: Path, job: str, host: str, port: int, *, name: str | None = None,
                    labels: dict[str, str] | None = None, remove_at_exit: bool = True) -> Path:
    """Announce http://host:port/metrics to the state dir's Prometheus; returns the target file."""
    folder = targets_dir(state_dir, job)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name or f'{os.getpid()}-{port}'}.json"
    entry = [{"targets": [f"{host}:{port}"], "labels": {"pid": str(os.getpid()), **(labels or {})}}]
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(entry))
    tmp.replace(path)  # Prometheus never reads half a file
    if remove_at_exit:
        atexit.register(unregister_target, path)
    return path


def unregister_target(path: Path) -> None:
    path.unlink(missing_ok=True)
