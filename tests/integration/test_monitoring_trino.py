"""The embedded Trino as a Prometheus target: a real Prometheus scrapes a real Trino's /metrics over HTTPS (its
local CA) as the monitoring principal, which reads system information and no data.

One Trino (~40 s to start) and one Prometheus + Alertmanager for the module, from one state dir, monitoring
started first: Trino's start registers its target and makes the running Prometheus reload (the order
`icetide trino up` beside a running `stack up --monitoring` takes). The example table and policy come from
tests/fixtures/trino.py; `policy apply` rewrites rules.json, which must keep the monitoring principal.
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from icetide.services.monitoring import Monitoring
from icetide.services.trino import MONITOR_USER, TrinoServer
from tests.fixtures.trino import prepare, query, seed, trino_environment
from tests.integration.test_monitoring import SCALE, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def watched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    state = tmp_path_factory.mktemp("trino-monitoring")
    with trino_environment(state, ICETIDE__MONITORING__ENABLED="true", ICETIDE__MONITORING__TIME_SCALE=str(SCALE),
                           ICETIDE__MONITORING__SCRAPE_INTERVAL_S="0.5",
                           ICETIDE__MONITORING__EVALUATION_INTERVAL_S="0.5") as settings:
        monitoring, server = Monitoring(), TrinoServer(settings.state_dir)
        try:
            urls = monitoring.start(settings, settings.state_dir)
            prepare(server)
            server.start(settings, settings.state_dir)
            env = seed(server, settings, state)
            yield {**env, "prometheus": urls["prometheus"]}
        finally:
            server.stop()
            monitoring.stop()


def promql(env: dict[str, Any], expr: str) -> list[dict[str, Any]]:
    url = f"{env['prometheus']}api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as response:
        body = json.loads(response.read())
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def test_prometheus_scrapes_trino_as_the_monitoring_principal(watched: dict[str, Any]) -> None:
    from icetide.services.monitoring_config import EXTERNAL_METRICS

    server: TrinoServer = watched["server"]
    assert oct(server.monitor_password_file.stat().st_mode & 0o777) == "0o600"
    assert MONITOR_USER in server.users()
    for _ in range(3):  # finished queries for the counters
        assert query(watched, "ana", "SELECT count(*) FROM vendas")
    try:
        wait_for("Trino up and its finished queries counted", lambda: bool(promql(
            watched, f'up{{job="trino"}} == 1 and on (instance) {FINISHED} >= 3')), timeout_s=60)
    except AssertionError as exc:
        up = promql(watched, 'up{job="trino"}')
        served = promql(watched, 'count by (__name__) ({job="trino",__name__=~".*QueryManager.*Queries.*"})')
        raise AssertionError(f"{exc}; up: {up}; served: {[r['metric']['__name__'] for r in served]}") from None
    missing = [m for m in EXTERNAL_METRICS["trino"][1] if not promql(watched, f'{m}{{job="trino"}}')]
    assert not missing, f"Trino does not serve {missing}"


FINISHED = 'trino_execution_name_QueryManager_CompletedQueries{job="trino"}'


def test_the_monitoring_principal_reads_no_data(watched: dict[str, Any]) -> None:
    import trino

    password = watched["server"].monitor_password_file.read_text().strip()
    for sql in ("SELECT * FROM vendas", "SELECT * FROM system.runtime.queries",
                "SELECT * FROM lake.information_schema.tables"):
        with pytest.raises(trino.exceptions.TrinoUserError, match="Access Denied"):
            query(watched, MONITOR_USER, sql, password=password)
    assert query(watched, MONITOR_USER, "SHOW CATALOGS", password=password) == []


def test_trino_stopped_removes_its_target(tmp_path: Path) -> None:
    """The target file lives while Trino runs (`stop` removes it; checked without a server)."""
    from icetide.metrics import register_target, targets_dir

    path = register_target(tmp_path, "trino", "127.0.0.1", 1, name="coordinator", remove_at_exit=False)
    assert TrinoServer(tmp_path).stop() is False and not path.exists()
    assert list(targets_dir(tmp_path, "trino").glob("*.json")) == []
