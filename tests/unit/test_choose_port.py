"""process.choose_port: the one rule every embedded service picks its port by."""

from __future__ import annotations

import socket

import pytest

from icetide.errors import StackError
from icetide.process import choose_port, free_port

pytestmark = pytest.mark.unit

HOST = "127.0.0.1"


def test_a_free_wanted_port_is_taken_as_is() -> None:
    port = free_port(HOST)
    assert choose_port(HOST, port, "trino.port") == port


def test_a_taken_wanted_port_names_the_setting_and_its_override() -> None:
    with socket.socket() as listener:
        listener.bind((HOST, 0))
        listener.listen()
        taken = listener.getsockname()[1]
        with pytest.raises(StackError, match=r"setting monitoring\.prometheus_port\) is in use") as caught:
            choose_port(HOST, taken, "monitoring.prometheus_port")
        assert "ICETIDE__MONITORING__PROMETHEUS_PORT=0" in str(caught.value)
        assert choose_port(HOST, 0, "spark.cluster_port", previous=taken) != taken  # taken: another one


def test_port_zero_keeps_the_previous_port_while_it_is_free() -> None:
    previous = free_port(HOST)
    assert choose_port(HOST, 0, "catalog.rest_port", previous=previous) == previous
    assert choose_port(HOST, 0, "catalog.rest_port") > 0
