# syntax=docker/dockerfile:1
# icetide in a container: JDK 17, the pinned Python dependencies, the Maven-fetched jars, a non-root user.
#
#   docker build -t icetide:0.1.0 .                               # the CLI (default target)
#   docker build --target flink -t icetide-flink:0.1.0 .          # + the Flink distribution (k8s/flink/)
#   docker build --target rest-catalog -t icetide-rest:0.1.0 .    # Iceberg's reference REST catalog server
#
# The targets share every layer but the last; see docs/deploy.md. No warehouse lives in a container: tables
# are on S3 (storage.kind: s3) behind the REST catalog, and the state dir holds only logs and run folders.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
# The Flink distribution must be the version of the pinned apache-flink wheel (tests/unit/test_deploy.py).
ARG FLINK_IMAGE=flink:2.0.2-java17
# Debian packages are not version-pinned (hadolint DL3008): bookworm's security updates replace exact
# versions; the Python and JVM dependencies, which decide behaviour, are pinned.

# --- jars: every JVM dependency, fetched by Maven from jars/<group>/pom.xml, exactly as `make setup` ------------
FROM ${PYTHON_IMAGE} AS jars
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jdk-headless maven \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY jars/spark/pom.xml jars/spark/pom.xml
COPY jars/flink/pom.xml jars/flink/pom.xml
COPY jars/kafka/pom.xml jars/kafka/pom.xml
RUN --mount=type=cache,target=/root/.m2 \
    for group in spark flink kafka; do \
      mvn -q -B -f "jars/$group/pom.xml" -Dmaven.repo.local=/root/.m2/repository \
          dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="/opt/icetide/jars/$group" \
      || exit 1; \
    done
# Flink's S3 file system, a plugin (FLINK_PLUGINS_DIR=<jars>/flink-plugins): the CDC job's checkpoints on S3
COPY jars/flink-plugins/s3-fs-hadoop/pom.xml jars/flink-plugins/s3-fs-hadoop/pom.xml
RUN --mount=type=cache,target=/root/.m2 \
    mvn -q -B -f jars/flink-plugins/s3-fs-hadoop/pom.xml -Dmaven.repo.local=/root/.m2/repository \
        dependency:copy-dependencies -DincludeScope=runtime \
        -DoutputDirectory=/opt/icetide/jars/flink-plugins/s3-fs-hadoop
# icetide's own JVM classes (jvm/): the providers and the SASL handler that follow a rotated credential
COPY jvm jvm
COPY scripts/build-jvm.sh scripts/build-jvm.sh
RUN mkdir -p /opt/icetide/build && ln -s /opt/icetide/jars /opt/icetide/build/jars \
 && bash scripts/build-jvm.sh /opt/icetide/build && rm -rf /opt/icetide/build
# Iceberg's reference REST catalog server and icetide's launcher for it, as `make setup` builds them (the
# rest-catalog target runs it; the build folder is the pom's <directory>, ../../.cache/build/rest)
COPY jars/rest jars/rest
RUN --mount=type=cache,target=/root/.m2 \
    mvn -q -B -f jars/rest/pom.xml -Dmaven.repo.local=/root/.m2/repository package \
        dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory=/opt/icetide/jars/rest \
 && cp .cache/build/rest/icetide-rest-launcher.jar /opt/icetide/jars/rest/

# --- build: a venv with icetide and its pinned dependencies (transitive pins from requirements.lock) ------------
FROM ${PYTHON_IMAGE} AS build
# A compiler and a JDK only in case a wheel is missing for this platform (pemja builds against the JDK).
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential openjdk-17-jdk-headless \
 && rm -rf /var/lib/apt/lists/*
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/icetide/venv && /opt/icetide/venv/bin/pip install -q --upgrade pip==26.3
WORKDIR /src
COPY pyproject.toml requirements.lock README.md ./
COPY icetide icetide
COPY streaming streaming
COPY connectors connectors
COPY batch batch
COPY policies policies
RUN /opt/icetide/venv/bin/pip install -c requirements.lock . \
 && /opt/icetide/venv/bin/pip check

# --- base: what runs ------------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS base
# JDK 17 (Spark 4 and Flink 2); /usr/lib/jvm/java-17-openjdk is one of the homes icetide/jvm.py looks for.
# hadolint ignore=DL3008
RUN mkdir -p /usr/share/man/man1 \
 && apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jre-headless \
 && rm -rf /var/lib/apt/lists/* \
 && ln -s "$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")" /usr/lib/jvm/java-17-openjdk
RUN groupadd --system --gid 10001 icetide \
 && useradd --system --uid 10001 --gid icetide --create-home --home-dir /home/icetide icetide \
 && mkdir -p /var/lib/icetide/identities /var/lib/icetide/maintenance /var/lib/icetide/audit /etc/icetide \
 && chown -R icetide:icetide /var/lib/icetide
COPY --from=build /opt/icetide/venv /opt/icetide/venv
COPY --from=jars /opt/icetide/jars /opt/icetide/jars
# ICETIDE_JAR_CACHE is read by icetide/jvm.py; the state dir holds logs, run folders and (local storage only)
# the warehouse; identities/, maintenance/ and audit/ exist owned by icetide, so a named volume mounted there
# (compose: s3-identities, maint-log, audit-log) starts writable by uid 10001. Settings come from ICETIDE_CONFIG and
# ICETIDE__SECTION__KEY, set by compose or Kubernetes.
# FLINK_LOG_DIR: PyFlink's local gateway logs to <site-packages>/pyflink/log otherwise, which is root's.
ENV PATH=/opt/icetide/venv/bin:$PATH \
    JAVA_HOME=/usr/lib/jvm/java-17-openjdk \
    ICETIDE_JAR_CACHE=/opt/icetide/jars \
    ICETIDE__STACK__STATE_DIR=/var/lib/icetide \
    PYTHONUNBUFFERED=1 \
    FLINK_LOG_DIR=/home/icetide/flink-log
WORKDIR /home/icetide
USER 10001:10001

# --- flink: + the Flink distribution and its entrypoint, for the Flink Kubernetes Operator (PythonDriver) -------
FROM ${FLINK_IMAGE} AS flink-dist

FROM base AS flink
COPY --from=flink-dist --chown=10001:10001 /opt/flink /opt/flink
COPY --from=flink-dist /docker-entrypoint.sh /docker-entrypoint.sh
# The cluster's own S3 file system (checkpoints on s3://, storage.checkpoint_prefix): the distribution's plugin,
# of the distribution's version, loaded by every job and task manager at start
COPY --from=flink-dist --chown=10001:10001 /opt/flink/opt/flink-s3-fs-hadoop-2.0.2.jar /opt/flink/plugins/s3-fs-hadoop/
# jemalloc is not installed here; the entrypoint would otherwise LD_PRELOAD a missing library.
ENV FLINK_HOME=/opt/flink \
    FLINK_LOG_DIR=/opt/flink/log \
    PATH=/opt/flink/bin:$PATH \
    DISABLE_JEMALLOC=true
ENTRYPOINT ["/docker-entrypoint.sh"]

# --- rest-catalog: Iceberg's reference REST catalog server (what apache/iceberg-rest-fixture runs) ----------------
# Run by icetide's launcher (jars/rest/src), as in the embedded stack: unlike the fixture's own main it never logs
# the catalog properties, and it reads them from a file (/etc/iceberg-rest/catalog.properties: configuration only;
# the database password comes from the environment variable jdbc.password-env names, the S3 key from the
# catalog role's credentials file, AWS_SHARED_CREDENTIALS_FILE). The backing catalog is JDBC on PostgreSQL.
FROM base AS rest-catalog
EXPOSE 8181
ENTRYPOINT ["java", "-Xmx512m", "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn", \
            "-Dorg.slf4j.simpleLogger.log.org.apache.iceberg.rest.IcetideRestLauncher=info", \
            "-cp", "/opt/icetide/jars/rest/*", "org.apache.iceberg.rest.IcetideRestLauncher"]
CMD ["/etc/iceberg-rest/catalog.properties"]

# --- icetide (default target): the CLI -----------------------------------------------------------------------------
FROM base AS icetide
ENTRYPOINT ["icetide"]
CMD ["--help"]
