#!/usr/bin/env bash
# System prerequisites for icetide: JDK 17 and Maven (JVM engines and jars), kcat (an independent
# Kafka client for checks), PostgreSQL server binaries (downstream sink tests), Prometheus and
# Alertmanager (the embedded monitoring stack). Installs what is
# missing with apt-get when run as root; otherwise says what to install.
set -euo pipefail

need=()
jdk17=""
for d in "${ICETIDE_JAVA_HOME:-}" "${JAVA_HOME:-}" /usr/lib/jvm/java-17-openjdk-amd64 /usr/lib/jvm/java-17-openjdk-arm64; do
  if [ -n "$d" ] && [ -x "$d/bin/java" ] && "$d/bin/java" -version 2>&1 | grep -q 'version "17'; then jdk17=$d; break; fi
done
[ -n "$jdk17" ] || need+=(openjdk-17-jdk-headless)
command -v mvn >/dev/null || need+=(maven)
command -v kcat >/dev/null || need+=(kcat)
command -v promtool >/dev/null || need+=(prometheus)   # promtool checks and tests the alert rules; the server too
command -v prometheus-alertmanager >/dev/null || need+=(prometheus-alertmanager)  # stack up --monitoring
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)

if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "error: missing system packages: ${need[*]} — install them with: sudo apt-get install ${need[*]}" >&2
    exit 1
  fi
  echo "installing Debian packages: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
echo "system ok: promtool $(promtool --version 2>/dev/null | head -1 | awk "{print \$3}"), JDK 17 at ${jdk17:-/usr/lib/jvm/java-17-openjdk-*}, $(mvn -v 2>/dev/null | head -1 | sed "s/\x1b\[[0-9;]*m//g"), kcat $(kcat -V 2>/dev/null | grep -o "Version [^ ]*" | head -1)"
