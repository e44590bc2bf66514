"""The JVM side: which JDK to use and where the Maven-fetched jars are.

`make setup` fetches every jar listed in `jars/<group>/pom.xml` into
`.cache/jars/<group>/`; this module only finds them (it never downloads).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from icetide.errors import SetupError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
JAR_GROUPS = ("spark", "flink", "kafka")  # what the product needs (the Dockerfile fetches these)
# what only the tests' services need: the Kafka Connect worker's classpath (connect) and its plugin.path,
# one folder per Connect plugin (connect-plugins/<name>), and Trino's JDBC driver of the BI tests (trino-jdbc);
# `make setup` fetches them too
TEST_JAR_GROUPS = ("connect", "connect-plugins/debezium-jdbc", "connect-plugins/apicurio-avro", "trino-jdbc")
# the embedded lake's JVM service: Iceberg's reference REST catalog server and its loopback launcher
# (`make setup` fetches it; the image does not run the embedded lake yet)
LAKE_JAR_GROUPS = ("rest",)
MONITORING_JAR_GROUPS = ("jmx",)  # the JMX exporter agent of the broker (stack up --monitoring)
# icetide's own JVM classes (jvm/, compiled by `make setup`): the S3 credentials provider and the Kafka SASL
# handler that follow a rotated credential; every group whose JVM reads the lake or Kafka as a role gets them
OWN_GROUP = "icetide"
OWN_JAR_USERS = ("spark", "flink", "rest", "connect")
REQUIRED_JAVA = 17
# On a small shared machine C2 compiler threads and G1's workers double a JVM service's start-up time
# (measured for the broker: 21-24 s vs 8-12 s on 2 busy cores). Services append their own options after
# these, so a setting can override them.
FAST_START_OPTS = ("-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1")
_CANDIDATES = (
    "/usr/lib/jvm/java-17-openjdk-amd64",
    "/usr/lib/jvm/java-17-openjdk-arm64",
    "/usr/lib/jvm/java-17-openjdk",
    "/usr/lib/jvm/temurin-17-jdk-amd64",
)


def jar_cache() -> Path:
    """Where the jar groups live: `$ICETIDE_JAR_CACHE` (an installed wheel, the image), else the source
    tree's `.cache/jars/` that `make setup` fills."""
    return Path(os.environ.get("ICETIDE_JAR_CACHE") or PROJECT_ROOT / ".cache" / "jars")


def _java_major(java_home: Path) -> int | None:
    java = java_home / "bin" / "java"
    if not java.is_file():
        return None
    try:
        out = subprocess.run([str(java), "-version"], capture_output=True, text=True, timeout=30).stderr
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r'version "(\d+)', out)
    return int(match.group(1)) if match else None


@lru_cache(maxsize=1)
def java_home() -> Path:
    """JDK 17: `$ICETIDE_JAVA_HOME`, else `$JAVA_HOME` if it is 17, else a known location."""
    explicit = os.environ.get("ICETIDE_JAVA_HOME")
    candidates = [explicit] if explicit else [os.environ.get("JAVA_HOME"), *_CANDIDATES]
    for candidate in filter(None, candidates):
        if _java_major(Path(candidate)) == REQUIRED_JAVA:
            return Path(candidate)
    which = shutil.which("java")
    if which and not explicit:
        home = Path(which).resolve().parent.parent
        if _java_major(home) == REQUIRED_JAVA:
            return home
    raise SetupError(
        "JDK 17 not found (Spark 4 and Flink 2 need it): install it with "
        "`apt-get install openjdk-17-jdk-headless` or set ICETIDE_JAVA_HOME"
    )


@contextmanager
def gateway_launch(extra: Mapping[str, str] | None = None) -> Iterator[None]:
    """JAVA_HOME (JDK 17) and `extra` in `os.environ` only while a library starts its gateway JVM, then the
    previous values back. pyspark's and PyFlink's gateway launchers take their child's environment from
    `os.environ` (no argument for it), so this is the one place that touches it; every other child
    process gets `java_env()`."""
    wanted = {"JAVA_HOME": str(java_home()), **(extra or {})}
    saved = {name: os.environ.get(name) for name in wanted}
    os.environ.update(wanted)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def java_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """A copy of the environment with JAVA_HOME and PATH pointing at JDK 17 (for child processes;
    `os.environ` is left alone)."""
    env = dict(os.environ if base is None else base)
    home = java_home()
    env["JAVA_HOME"] = str(home)
    env["PATH"] = f"{home / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


def jars(group: str) -> list[Path]:
    """The jars of one manifest group, fetched by `make setup` (with icetide's own for `OWN_JAR_USERS`)."""
    if group not in JAR_GROUPS + TEST_JAR_GROUPS + LAKE_JAR_GROUPS + MONITORING_JAR_GROUPS:
        raise ValueError(f"unknown jar group {group!r}")
    found = _group_jars(group)
    return found + _group_jars(OWN_GROUP) if group in OWN_JAR_USERS else found


def _group_jars(group: str) -> list[Path]:
    folder = jar_cache() / group
    found = sorted(folder.glob("*.jar"))
    if not found:
        raise SetupError(f"no jars in {folder}: run `make setup` in the source tree (it fetches them with Maven "
                         "and builds icetide's own), or point ICETIDE_JAR_CACHE at a folder holding the jar groups")
    return found
