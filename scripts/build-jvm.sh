#!/usr/bin/env bash
# icetide's own JVM classes (jvm/), compiled with the JDK's javac against jar groups `make setup` fetched:
#   <cache>/jars/icetide/icetide-jvm.jar     FileCredentialsProvider (AWS SDK v2: Iceberg's S3FileIO) and
#       FileScramCallbackHandler twice: against kafka-clients, and renamed to flink-sql-connector-kafka's
#       relocated Kafka packages (io.icetide.jvm.flink.) — for Spark, Flink, the REST catalog, Kafka Connect
#   <cache>/jars/flink-plugins/s3-fs-hadoop/icetide-s3a.jar   io.icetide.s3a.FileCredentialsProvider (AWS SDK
#       v1 + Hadoop, unrelocated in the plugin), in the plugin's folder: only its class loader sees those classes
# Usage: scripts/build-jvm.sh <cache dir>
set -euo pipefail
cache=$(realpath "$1")
src=$(dirname "$(realpath "$0")")/../jvm
javac="${JAVA_HOME:+$JAVA_HOME/bin/}javac" jar="${JAVA_HOME:+$JAVA_HOME/bin/}jar"
build="$cache/build/icetide-jvm"
one() { ls "$cache"/jars/$1 2>/dev/null | head -1 | grep . || { echo "error: no $1 under $cache/jars (make setup)" >&2; exit 1; }; }
aws=$(one 'flink/iceberg-aws-bundle-*.jar')
kafka=$(one 'kafka/kafka-clients-*.jar')
flink_kafka=$(one 'flink/flink-sql-connector-kafka-*.jar')
s3fs=$(one 'flink-plugins/s3-fs-hadoop/flink-s3-fs-hadoop-*.jar')

rm -rf "$build"
mkdir -p "$build/gen/io/icetide/jvm/flink" "$build/main" "$build/s3a" "$cache/jars/icetide"
sed -e 's/^package io\.icetide\.jvm;/package io.icetide.jvm.flink;/' \
    -e 's/import org\.apache\.kafka\./import org.apache.flink.kafka.shaded.org.apache.kafka./' \
    "$src/src/main/java/io/icetide/jvm/FileScramCallbackHandler.java" \
    > "$build/gen/io/icetide/jvm/flink/FileScramCallbackHandler.java"
"$javac" --release 17 -Xlint:all -d "$build/main" -cp "$aws:$kafka:$flink_kafka" \
    $(find "$src/src/main/java" "$build/gen" -name '*.java')
"$javac" --release 17 -Xlint:all -d "$build/s3a" -cp "$s3fs" $(find "$src/s3a/src/main/java" -name '*.java')
"$jar" --create --file "$build/icetide-jvm.jar" -C "$build/main" .
"$jar" --create --file "$build/icetide-s3a.jar" -C "$build/s3a" .
mv "$build/icetide-jvm.jar" "$cache/jars/icetide/icetide-jvm.jar"
mv "$build/icetide-s3a.jar" "$cache/jars/flink-plugins/s3-fs-hadoop/icetide-s3a.jar"
echo "icetide-jvm: $cache/jars/icetide/icetide-jvm.jar, $cache/jars/flink-plugins/s3-fs-hadoop/icetide-s3a.jar"
