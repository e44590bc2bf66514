"""icetide/jvm.py: where the jar cache is (an installed wheel has no source tree to find it in)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from icetide import jvm
from icetide.errors import SetupError

pytestmark = pytest.mark.unit


def test_jar_cache_follows_the_environment_else_the_source_tree(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ICETIDE_JAR_CACHE", str(tmp_path))
    (tmp_path / "kafka").mkdir()
    (tmp_path / "kafka" / "kafka-clients.jar").write_bytes(b"")
    assert jvm.jars("kafka") == [tmp_path / "kafka" / "kafka-clients.jar"]
    monkeypatch.setenv("ICETIDE_JAR_CACHE", "")  # empty: unset, not the working directory
    assert jvm.jar_cache() == jvm.PROJECT_ROOT / ".cache" / "jars"


def test_missing_jars_name_the_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ICETIDE_JAR_CACHE", str(tmp_path))
    with pytest.raises(SetupError, match="ICETIDE_JAR_CACHE") as caught:
        jvm.jars("flink")
    assert str(tmp_path / "flink") in str(caught.value)


def test_gateway_launch_sets_java_home_only_while_it_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JAVA_HOME", "/somewhere/else")
    monkeypatch.delenv("HADOOP_CLASSPATH", raising=False)
    with jvm.gateway_launch({"HADOOP_CLASSPATH": "a.jar"}):
        assert os.environ["JAVA_HOME"] == str(jvm.java_home())
        assert os.environ["HADOOP_CLASSPATH"] == "a.jar"
    assert os.environ["JAVA_HOME"] == "/somewhere/else"
    assert "HADOOP_CLASSPATH" not in os.environ
    env = jvm.java_env()
    assert env["JAVA_HOME"] == str(jvm.java_home()) and os.environ["JAVA_HOME"] == "/somewhere/else"
