"""Embedded services, one module each, all of one shape (icetide/services/shape.py; docs/architecture.md,
"Embedded stack").

A service module has one class with:

- `needs()` — what must be installed for it (jar folders, binaries) as `Need`s; `require(needs)`
  turns the missing ones into one `SetupError` that says how to get them (`make setup`);
- `start(settings, state_dir)` → its endpoints (name → address), once it is ready; the process,
  its pid file, configuration and log live under `<state_dir>/<service name>/`;
- `ready()` — does the running service answer;
- `stop()` — True if one was running;
- `status()` — a JSON-ready dict (`running`, `pid`, the endpoints, `log_file`, ...).

Test fixtures use the very same objects. The process helpers every service shares (free ports,
pid files, stopping a process group, resident memory, log tails) live once in `icetide.process`;
the JVM's flags and jar folders in `icetide.jvm`. Services so far: `icetide.services.connect`
(a Kafka Connect worker, the stock consumer of the integration tests).
"""

from __future__ import annotations

from icetide.services.shape import JvmProcess, Need, Service, require

__all__ = ["JvmProcess", "Need", "Service", "require"]
