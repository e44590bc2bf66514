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


def test_the_groups_that_act_as_a_role_get_icetides_own_jar(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ICETIDE_JAR_CACHE", str(tmp_path))
    for group, name in (("spark", "iceberg.jar"), ("kafka", "kafka-clients.jar")):
        (tmp_path / group).mkdir()
        (tmp_path / group / name).write_bytes(b"")
    with pytest.raises(SetupError, match="builds icetide's own") as caught:  # a cache from before jvm/ existed
        jvm.jars("spark")
    assert str(tmp_path / jvm.OWN_GROUP) in str(caught.value)
    (tmp_path / jvm.OWN_GROUP).mkdir()
    (tmp_path / jvm.OWN_GROUP / "icetide-jvm.jar").write_bytes(b"")
    assert jvm.jars("spark") == [tmp_path / "spark" / "iceberg.jar", tmp_path / jvm.OWN_GROUP / "icetide-jvm.jar"]
    assert jvm.jars("kafka") == [tmp_path / "kafka" / "kafka-clients.jar"]  # the broker does not need it


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
