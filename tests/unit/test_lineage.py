"""Lineage events (icetide/lineage.py): OpenLineage RunEvents appended as JSON lines and POSTed to a real HTTP
receiver (http.server), an endpoint that does not answer costs the job nothing, and `icetide lineage` walks
and draws the graph the jobs recorded."""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from click.testing import CliRunner

from icetide import lineage
from icetide.cli import App
from icetide.errors import ConfigError
from icetide.lineage_cli import lineage as command
from icetide.process import free_port
from icetide.settings import Settings, load_settings

pytestmark = pytest.mark.unit


def _settings(tmp_path: Path, **env: str) -> Settings:
    return load_settings(None, environ={"ICETIDE__STACK__STATE_DIR": str(tmp_path), **env})


class _Receiver(BaseHTTPRequestHandler):
    got: ClassVar[list[tuple[str, dict[str, str], dict[str, Any]]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.got.append((self.path, dict(self.headers), json.loads(body)))
        self.send_response(201)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def _pipeline(settings: Settings) -> None:
    """What a demo records: generate → cdc run → cdc apply, and a policy's secure view."""
    vendas = lineage.table(settings, "sales.vendas", [("sale_id", "bigint"), ("amount", "decimal(10,2)")])
    topic = lineage.topic("127.0.0.1:9092,127.0.0.1:9093", "icetide.sales.vendas")
    lineage.emit(settings, "batch.generate", [], [vendas])
    lineage.emit(settings, "cdc.run", [vendas], [topic])
    lineage.emit(settings, "cdc.apply", [topic], [lineage.downstream(settings, "sales.vendas")])
    lineage.emit(settings, "policy.apply.spark", [vendas], [lineage.Dataset(settings.warehouse, "lake.sec_ana.vendas")])


def test_runs_are_openlineage_events_appended_as_json_lines(tmp_path: Path) -> None:
    from openlineage.client.event_v2 import RunEvent
    from openlineage.client.serde import Serde

    settings = _settings(tmp_path)
    _pipeline(settings)
    events = lineage.read_events(lineage.events_path(tmp_path))
    assert [e["job"]["name"] for e in events] == ["batch.generate", "cdc.run", "cdc.apply", "policy.apply.spark"]
    assert all(e["eventType"] == "COMPLETE" and e["job"]["namespace"] == "icetide" for e in events)
    assert len({e["run"]["runId"] for e in events}) == 4
    run = events[1]
    assert run["inputs"][0]["namespace"] == settings.warehouse and run["inputs"][0]["name"] == "sales.vendas"
    assert [f["name"] for f in run["inputs"][0]["facets"]["schema"]["fields"]] == ["sale_id", "amount"]
    assert {k: run["outputs"][0][k] for k in ("namespace", "name")} == {"namespace": "kafka://127.0.0.1:9092",
                                                                        "name": "icetide.sales.vendas"}
    assert run["schemaURL"].startswith("https://openlineage.io/spec/")
    # the same bytes the library's own serializer writes for the event the library's model builds
    again = lineage.build_event("cdc.run", [], [], run_id=run["run"]["runId"])
    assert isinstance(again, RunEvent) and json.loads(Serde.to_json(again))["run"] == run["run"]
    lineage.events_path(tmp_path).open("a").write('{"torn": ')  # a crash mid-line loses that line only
    assert len(lineage.read_events(lineage.events_path(tmp_path))) == 4


def test_events_reach_an_http_endpoint_with_the_key_as_bearer(tmp_path: Path) -> None:
    _Receiver.got = []
    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        settings = _settings(tmp_path, ICETIDE__LINEAGE__URL=f"http://127.0.0.1:{server.server_port}",
                             ICETIDE__LINEAGE__API_KEY="k-123")
        sent = lineage.emit(settings, "batch.merge", [lineage.table(settings, "sales.src")],
                            [lineage.table(settings, "sales.vendas")])
    finally:
        server.shutdown()
    assert len(_Receiver.got) == 1
    path, headers, body = _Receiver.got[0]
    assert path == "/api/v1/lineage" and headers["Authorization"] == "Bearer k-123"
    assert body == sent and body["job"]["name"] == "batch.merge"
    assert lineage.read_events(lineage.events_path(tmp_path)) == [sent]  # and the file has it too


def test_an_endpoint_that_does_not_answer_costs_the_job_nothing_and_leaks_no_secret(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = _settings(tmp_path, ICETIDE__LINEAGE__URL=f"http://user:pw-secret@127.0.0.1:{free_port()}",
                         ICETIDE__LINEAGE__API_KEY="key-secret", ICETIDE__LINEAGE__TIMEOUT_S="0.5")
    with caplog.at_level(logging.WARNING, logger="icetide.lineage"):
        sent = lineage.emit(settings, "cdc.run", [], [lineage.topic("127.0.0.1:9092", "t")])
    assert sent is not None and lineage.read_events(lineage.events_path(tmp_path)) == [sent]
    assert "did not take the event of cdc.run" in caplog.text
    assert "secret" not in caplog.text and "user:" not in caplog.text


def test_a_postgres_downstream_is_named_by_host_never_by_its_password(tmp_path: Path) -> None:
    settings = _settings(tmp_path, ICETIDE__SINK__KIND="postgres",
                         ICETIDE__SINK__POSTGRES_DSN="host=db.internal port=6543 user=u password=hunter2 dbname=shop")
    ds = lineage.downstream(settings, "sales.vendas")
    assert (ds.namespace, ds.name) == ("postgres://db.internal:6543", "shop.sales.vendas")
    assert lineage.emit(_settings(tmp_path, ICETIDE__LINEAGE__ENABLED="false"), "x", [], [ds]) is None
    assert not lineage.events_path(tmp_path).exists()  # lineage off: nothing written


def test_lineage_command_walks_up_and_down_and_draws_the_graph(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    _pipeline(settings)
    app = App(config_path=None, _settings=settings)
    png = tmp_path / "g.png"
    result = CliRunner().invoke(command, ["icetide.sales.vendas", "--png", str(png), "--json"], obj=app)
    assert result.exit_code == 0, result.output
    view = json.loads(result.stdout)
    assert view["datasets"] == ["kafka://127.0.0.1:9092/icetide.sales.vendas"]
    assert view["upstream"] == [f"{settings.warehouse}/sales.vendas"]
    assert view["downstream"] == [f"sqlite://{settings.sqlite_path}/sales.vendas"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000

    table = CliRunner().invoke(command, ["sales.vendas"], obj=app)  # a bare name: the table it names
    assert table.exit_code == 0, table.output
    assert "downstream kafka://127.0.0.1:9092/icetide.sales.vendas" in table.output
    assert f"downstream {settings.warehouse}/lake.sec_ana.vendas" in table.output
    assert "--[cdc.apply]-->" in table.output and "upstream   (none recorded)" in table.output

    missing = CliRunner().invoke(command, ["sales.nothing"], obj=app)
    assert isinstance(missing.exception, ConfigError)  # main() prints it as `error: …` with exit status 2
    assert "no lineage recorded for 'sales.nothing'" in str(missing.exception)


# a Trino 476 OpenLineage event as its listener posts it, trimmed to the fields read
TRINO_EVENT: dict[str, Any] = {
    "eventType": "COMPLETE", "eventTime": "2026-12-02T19:00:00Z", "producer": "trino",
    "run": {"runId": "0193a4f2-0000-7000-8000-000000000001", "facets": {}},
    "job": {"namespace": "trino://127.0.0.1:8443", "name": "20261202_190000_00001_abcde"},
    "inputs": [{"namespace": "trino://127.0.0.1:8443", "name": "lake.sales.vendas"}], "outputs": [],
}


def test_maintenance_runs_and_bi_reads_show_on_the_table_not_as_edges(tmp_path: Path) -> None:
    from icetide.services.trino_audit import rename_datasets

    settings = _settings(tmp_path)
    _pipeline(settings)
    vendas = lineage.table(settings, "sales.vendas")
    lineage.emit(settings, "maint.expire", [vendas], [vendas],
                 facets={"icetide_maintenance": {"operation": "expire", "files_removed": 3}})
    read = rename_datasets(json.loads(json.dumps(TRINO_EVENT)), settings.warehouse, settings.catalog.name)
    assert read["inputs"] == [{"namespace": settings.warehouse, "name": "sales.vendas"}]
    lineage.record(tmp_path, settings.lineage, json.dumps(read), read, "trino query")
    events = lineage.read_events(lineage.events_path(tmp_path))
    assert not [e for e in lineage.edges(events) if e[1] == "maint.expire"]  # no self-loop in the walk
    result = CliRunner().invoke(command, ["sales.vendas", "--json"], obj=App(config_path=None, _settings=settings))
    assert result.exit_code == 0, result.output
    view = json.loads(result.stdout)
    assert view["read_by"] == [{"job": TRINO_EVENT["job"]["name"], "time": "2026-12-02T19:00:00Z"}]
    [maintained] = view["maintained_by"]
    assert maintained["job"] == "maint.expire"
    assert maintained["facets"]["icetide_maintenance"] | {"_producer": None, "_schemaURL": None} == {
        "operation": "expire", "files_removed": 3, "_producer": None, "_schemaURL": None}
    assert f"{settings.warehouse}/sales.vendas" not in view["upstream"] + view["downstream"]
    text = CliRunner().invoke(command, ["sales.vendas"], obj=App(config_path=None, _settings=settings)).output
    assert f"read by       {TRINO_EVENT['job']['name']}" in text and "maintained by maint.expire" in text
