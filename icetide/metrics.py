"""Prometheus helpers: every service registers its metrics on its own registry.

Each room keeps its metric definitions in a `metrics.py` beside the code that owns them and
builds them on a registry from `new_registry()`; `serve()` exposes one registry on /metrics.
"""

from __future__ import annotations

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
