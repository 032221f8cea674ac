#!/usr/bin/env bash
# The jars Spark's Kafka sink and Avro functions need (Maven Central), for
# the Spark baseline of integration/bench_streams.sh: Fink's distribution
# writes with spark-sql-kafka and to_avro, which pyspark's wheel does not
# ship. Versions are those pyspark 3.5.7 was built against (its parent POM:
# kafka 3.4.1, commons-pool2 2.11.1). Each jar is checked against Maven
# Central's SHA-1. Idempotent; prints the jars, comma-separated, last.
#   FINK_CACHE  cache root (default ~/.cache/fink)
set -euo pipefail
CACHE="${FINK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/fink}/spark-kafka-3.5.7"
REPO=https://repo1.maven.org/maven2
jars=(
  org/apache/spark/spark-sql-kafka-0-10_2.12/3.5.7
  org/apache/spark/spark-token-provider-kafka-0-10_2.12/3.5.7
  org/apache/spark/spark-avro_2.12/3.5.7
  org/apache/kafka/kafka-clients/3.4.1
  org/apache/commons/commons-pool2/2.11.1
)
mkdir -p "$CACHE"
out=()
for j in "${jars[@]}"; do
  artifact=$(basename "$(dirname "$j")"); version=$(basename "$j")
  file="$CACHE/$artifact-$version.jar"
  if [ ! -s "$file" ]; then
    curl -fsSL -o "$file.part" "$REPO/$j/$artifact-$version.jar"
    want=$(curl -fsSL "$REPO/$j/$artifact-$version.jar.sha1" | cut -c1-40)
    got=$(sha1sum "$file.part" | cut -c1-40)
    [ "$want" = "$got" ] || { rm -f "$file.part"; echo "install_spark_kafka: $artifact-$version.jar: SHA-1 mismatch" >&2; exit 1; }
    mv "$file.part" "$file"
  fi
  out+=("$file")
done
(IFS=,; echo "${out[*]}")
