"""Lineage: one OpenLineage run event per finished job run, from every room.

Who writes what: `batch generate` (→ the table), `batch merge` (source → target), `cdc run` (each table → its
change topic), `cdc apply` (each topic → its downstream table), `policy apply` (each table → its secure
views or Trino rules), `maint` (a table → itself, with an `icetide_maintenance` run facet saying what was
done) and the embedded Trino's queries (Trino's own OpenLineage listener posts them to the audit receiver,
`icetide.services.trino_audit`, which appends them here with the tables renamed into the warehouse's
namespace: a BI query reading a table is a run with that input and no output).
Events are built with PyPI's `openlineage-python` and go to two places: always appended
as JSON lines to `<state_dir>/lineage/events.jsonl` (what `icetide lineage TABLE` reads), and to an OpenLineage
HTTP endpoint (Marquez, DataHub, OpenMetadata …) when `lineage.url` is set. Lineage never fails the job it
describes: a write or an endpoint that does not answer is logged once, as a warning without the key.

Dataset names follow OpenLineage's conventions where they exist: an Iceberg table is named `namespace.table` in
the warehouse's namespace, a topic is named in `kafka://<first bootstrap server>`, a downstream table in
`postgres://host:port` or `sqlite://<path>`. Input datasets carry a schema facet when the caller knows it.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from icetide.settings import LineageSettings, Settings

log = logging.getLogger(__name__)
PRODUCER = "https://github.com/icetide/icetide"
JOB_NAMESPACE = "icetide"


@dataclass(frozen=True)
class Dataset:
    """One dataset of a run: where it lives (`namespace`), its name, and its columns when known."""

    namespace: str
    name: str
    fields: tuple[tuple[str, str], ...] = field(default=(), compare=False)


def events_path(state_dir: Path) -> Path:
    return Path(state_dir) / "lineage" / "events.jsonl"


def table(settings: Settings, name: str, fields: Iterable[tuple[str, str]] = ()) -> Dataset:
    """An Iceberg table of the configured warehouse."""
    return Dataset(settings.warehouse, name, tuple(fields))


def topic(bootstrap: str, name: str) -> Dataset:
    return Dataset(f"kafka://{bootstrap.split(',')[0].strip()}", name)


def change_topic(settings: Settings, bootstrap: str, table_name: str) -> Dataset:
    """The change topic `cdc run` publishes `namespace.table` to."""
    from icetide.events import topic_for

    namespace, _, short = table_name.rpartition(".")
    return topic(bootstrap, topic_for(settings.cdc.topic_prefix, namespace, short))


def downstream(settings: Settings, name: str) -> Dataset:
    """A table of the configured sink (PostgreSQL: host and port only, never the DSN's password)."""
    if settings.sink.kind == "postgres" and settings.sink.postgres_dsn is not None:
        from psycopg.conninfo import conninfo_to_dict

        info = conninfo_to_dict(settings.sink.postgres_dsn.get_secret_value())
        return Dataset(f"postgres://{info.get('host', 'localhost')}:{info.get('port', 5432)}",
                       f"{info.get('dbname', 'postgres')}.{name}")
    return Dataset(f"sqlite://{settings.sqlite_path}", name)


def spark_fields(schema: Any) -> list[tuple[str, str]]:
    """(name, type) of a Spark StructType, for the schema facet."""
    return [(f.name, f.dataType.simpleString()) for f in schema.fields]


def _openlineage_dataset(ds: Dataset, kind: str) -> Any:
    from openlineage.client.event_v2 import InputDataset, OutputDataset
    from openlineage.client.facet_v2 import schema_dataset

    facets: dict[str, Any] = {}
    if ds.fields:
        facets["schema"] = schema_dataset.SchemaDatasetFacet(
            fields=[schema_dataset.SchemaDatasetFacetFields(name=n, type=t) for n, t in ds.fields])
    cls = InputDataset if kind == "input" else OutputDataset
    return cls(namespace=ds.namespace, name=ds.name, facets=facets)


def build_event(job: str, inputs: Sequence[Dataset], outputs: Sequence[Dataset], *, failed: bool = False,
                run_id: str | None = None, now: dt.datetime | None = None,
                facets: dict[str, dict[str, Any]] | None = None) -> Any:
    """The OpenLineage RunEvent (COMPLETE, or FAIL) of one run of `job`; `facets` the run's own facets (name →
    fields), e.g. what a maintenance job did."""
    from openlineage.client.event_v2 import Job, Run, RunEvent, RunState
    from openlineage.client.generated.base import RunFacet

    run_facets = {name: cast(RunFacet, RunFacet(producer=PRODUCER).with_additional_properties(**fields))
                  for name, fields in (facets or {}).items()}
    return RunEvent(eventType=RunState.FAIL if failed else RunState.COMPLETE,
                    eventTime=(now or dt.datetime.now(dt.UTC)).isoformat(),
                    run=Run(runId=run_id or str(uuid.uuid4()), facets=run_facets),
                    job=Job(namespace=JOB_NAMESPACE, name=job),
                    producer=PRODUCER, inputs=[_openlineage_dataset(d, "input") for d in inputs],
                    outputs=[_openlineage_dataset(d, "output") for d in outputs])


def _http_transport(config: LineageSettings) -> Any:
    from openlineage.client.transport.http import ApiKeyTokenProvider, HttpConfig, HttpTransport, TokenProvider
    from openlineage.client.transport.http_common import DEFAULT_RETRY_CONFIG

    key = config.api_key
    auth = ApiKeyTokenProvider({"apiKey": key.get_secret_value()}) if key is not None else TokenProvider({})
    assert config.url is not None
    return HttpTransport(HttpConfig(url=config.url, endpoint=config.endpoint, timeout=config.timeout_s, auth=auth,
                                    retry={**DEFAULT_RETRY_CONFIG, "total": 1, "connect": 1, "read": 1,
                                           "backoff_factor": 0.2}))


def emit(settings: Settings, job: str, inputs: Sequence[Dataset], outputs: Sequence[Dataset], *,
         failed: bool = False, facets: dict[str, dict[str, Any]] | None = None) -> dict[str, Any] | None:
    """Record one run: the JSON line, then the endpoint if configured. Returns the event as a dict (None when
    lineage is off). Never raises: lineage must not fail the job it describes."""
    if not settings.lineage.enabled:
        return None
    from openlineage.client.serde import Serde

    event = build_event(job, inputs, outputs, failed=failed, facets=facets)
    line = Serde.to_json(event)
    record(settings.state_dir, settings.lineage, line, event, job)
    data: dict[str, Any] = json.loads(line)
    return data


def record(state_dir: Path, config: LineageSettings, line: str, event: Any, job: str) -> None:
    """Append one event's JSON `line` to the state dir's log and send `event` (what the HTTP transport takes:
    a RunEvent, or the event as a dict) to `config.url` when set; never raises."""
    path = events_path(state_dir)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as out:  # one write of one line: O_APPEND keeps runs whole
            out.write(line + "\n")
    except OSError as exc:
        log.warning("lineage: cannot append to %s (%s); the run is not recorded there", path, exc.strerror)
    if config.url:
        try:
            _http_transport(config).emit(event)
        except Exception as exc:  # any failure of the endpoint: the job goes on, the file has the event
            log.warning("lineage: the endpoint %s did not take the event of %s (%s)", _safe_url(config.url),
                        job, type(exc).__name__)


def _safe_url(url: str) -> str:
    """The URL without any user:password part."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


# -- reading -------------------------------------------------------------------------------------------------
def read_events(path: Path) -> list[dict[str, Any]]:
    """Every event of the log; a torn last line (a crash mid-write) is skipped."""
    if not path.is_file():
        return []
    events = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return events


def edges(events: Iterable[dict[str, Any]]) -> set[tuple[str, str, str]]:
    """(input dataset, job, output dataset) of every completed run; datasets as `namespace/name`."""
    out = set()
    for event in events:
        if event.get("eventType") != "COMPLETE":
            continue
        job = event["job"]["name"]
        for i in event.get("inputs", []):
            for o in event.get("outputs", []):
                a, b = f"{i['namespace']}/{i['name']}", f"{o['namespace']}/{o['name']}"
                if a != b:  # a table maintained in place is a run on it (`runs_on`), not an edge
                    out.add((a, job, b))
    return out


def runs_on(events: Iterable[dict[str, Any]], start: Iterable[str], last: int = 10) -> dict[str, list[Any]]:
    """The last `last` completed runs that read one of `start` and wrote nothing (`read_by`: a BI query) or
    rewrote it in place (`maintained_by`, with their run facets)."""
    nodes = set(start)
    found: dict[str, list[Any]] = {"read_by": [], "maintained_by": []}
    for event in events:
        if event.get("eventType") != "COMPLETE":
            continue
        inputs = {f"{d['namespace']}/{d['name']}" for d in event.get("inputs", [])}
        outputs = {f"{d['namespace']}/{d['name']}" for d in event.get("outputs", [])}
        run = {"job": event["job"]["name"], "time": event.get("eventTime")}
        if inputs & nodes and not outputs:
            found["read_by"].append(run)
        elif inputs & outputs & nodes:
            facets = {k: v for k, v in (event.get("run", {}).get("facets") or {}).items() if k.startswith("icetide")}
            found["maintained_by"].append({**run, "facets": facets})
    return {kind: runs[-last:] for kind, runs in found.items()}


def datasets(events: Iterable[dict[str, Any]]) -> set[str]:
    """Every dataset any completed run read or wrote, as `namespace/name` (a generated table has no input)."""
    return {f"{d['namespace']}/{d['name']}" for e in events if e.get("eventType") == "COMPLETE"
            for d in [*e.get("inputs", []), *e.get("outputs", [])]}


def resolve(nodes: set[str], name: str, warehouse: str) -> list[str]:
    """The datasets `name` means: an exact `namespace/name`, else the warehouse's table of that name (a
    downstream copy is often named alike), else every dataset whose name is `name`."""
    for exact in (name, f"{warehouse}/{name}"):
        if exact in nodes:
            return [exact]
    return sorted(n for n in nodes if n.rsplit("/", 1)[-1] == name)


def neighbourhood(graph: set[tuple[str, str, str]], start: Iterable[str]) -> dict[str, Any]:
    """Everything upstream and downstream of `start` (transitively), and the edges between them."""
    def walk(forward: bool) -> set[str]:
        seen, todo = set(), list(start)
        while todo:
            node = todo.pop()
            for a, _, b in graph:
                here, there = (a, b) if forward else (b, a)
                if here == node and there not in seen:
                    seen.add(there)
                    todo.append(there)
        return seen

    down, up = walk(True), walk(False)
    keep = set(start) | up | down
    return {"datasets": sorted(start), "upstream": sorted(up), "downstream": sorted(down),
            "edges": [{"from": a, "job": j, "to": b} for a, j, b in sorted(graph) if a in keep and b in keep]}


def draw(view: dict[str, Any], out: Path) -> Path:
    """The neighbourhood as a PNG: datasets in columns by distance from the sources, arrows labelled by job."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nodes = sorted({n for e in view["edges"] for n in (e["from"], e["to"])} | set(view["datasets"]))
    depth = {n: 0 for n in nodes}
    for _ in nodes:  # longest path from a source (the graph is small; a cycle stops after len(nodes) rounds)
        for e in view["edges"]:
            depth[e["to"]] = max(depth[e["to"]], depth[e["from"]] + 1)
    columns: dict[int, list[str]] = {}
    for n in nodes:
        columns.setdefault(min(depth[n], len(nodes)), []).append(n)
    where = {n: (x, -y) for x, col in columns.items() for y, n in enumerate(col)}
    width, height = 4 + 4 * len(columns), 1.5 + 1.2 * max(len(c) for c in columns.values())
    fig, ax = plt.subplots(figsize=(width, height))
    for e in view["edges"]:
        (x1, y1), (x2, y2) = where[e["from"]], where[e["to"]]
        ax.annotate("", xy=(x2 - 0.1, y2), xytext=(x1 + 0.1, y1), arrowprops={"arrowstyle": "->", "color": "grey"})
        ax.text((x1 + x2) / 2, (y1 + y2) / 2 + 0.12, e["job"], ha="center", fontsize=7, color="dimgrey")
    for n, (x, y) in where.items():
        namespace, _, name = n.rpartition("/")
        colour = "#ffd27f" if n in view["datasets"] else "#cfe2ff"
        ax.text(x, y, f"{name}\n{namespace}", ha="center", va="center", fontsize=8,
                bbox={"boxstyle": "round", "facecolor": colour, "edgecolor": "grey"})
    ax.set_xlim(-0.8, max(columns) + 0.8)
    ax.set_ylim(-max(len(c) for c in columns.values()) + 0.4, 0.6)
    ax.axis("off")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
