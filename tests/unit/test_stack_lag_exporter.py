"""`icetide stack lag-exporter`, the service docker-compose.yml runs: it serves the lag families even while the
broker does not answer (no series then: IcetideKafkaBrokerDown says why), announces its target, stops on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_lag_exporter_serves_and_announces_itself_without_a_broker(tmp_path: Path) -> None:
    env = {**os.environ, "ICETIDE__STACK__STATE_DIR": str(tmp_path),
           "ICETIDE__KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{_closed_port()}", "ICETIDE__METRICS__HOST": "127.0.0.1"}
    proc = subprocess.Popen([sys.executable, "-m", "icetide.cli", "stack", "lag-exporter"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        target = tmp_path / "monitoring" / "targets" / "icetide-kafka-lag" / "lag-exporter.json"
        deadline = time.monotonic() + 60
        while not target.is_file():
            assert proc.poll() is None, proc.communicate()[0]
            assert time.monotonic() < deadline, "no target announced"
            time.sleep(0.2)
        [entry] = json.loads(target.read_text())
        [address] = entry["targets"]
        with urllib.request.urlopen(f"http://{address}/metrics", timeout=30) as response:
            text = response.read().decode()
        assert "# TYPE icetide_kafka_consumergroup_lag gauge" in text
        assert "# TYPE icetide_kafka_consumergroup_committed_offset gauge" in text
        assert "icetide_kafka_consumergroup_lag{" not in text  # no broker, no invented series
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=30)[0]
    assert proc.returncode == 0, out
    assert not target.exists()  # the target leaves with the process
