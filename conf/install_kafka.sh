#!/usr/bin/env bash
# Install Apache Kafka (KRaft) jars from Maven Central into a cache outside the repo.
# Idempotent: a complete cache is reused without touching the network.
# Prints the resulting KAFKA_HOME on its last line.
#
#   KAFKA_VERSION   Kafka version to install        (default below)
#   FINK_CACHE      cache root                      (default ~/.cache/fink)
#   KAFKA_HOME      use an existing installation instead (must hold libs/*.jar)
set -euo pipefail

KAFKA_VERSION="${KAFKA_VERSION:-4.1.1}"
CACHE="${FINK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/fink}"

die() { echo "install_kafka: $*" >&2; exit 1; }

# Java 17+ is required by Kafka 4.x brokers.
command -v java >/dev/null 2>&1 || die "java not found: install a Java 17+ runtime (Debian: apt-get install openjdk-17-jre-headless)"
java_major=$(java -XshowSettings:properties -version 2>&1 | awk -F'= ' '/java.specification.version/ {print $2}' | tr -d ' ')
java_major=${java_major%%.*}
[ "${java_major:-0}" -ge 17 ] 2>/dev/null || die "Java 17+ is required by Kafka ${KAFKA_VERSION}, found Java ${java_major:-unknown}"

if [ -n "${KAFKA_HOME:-}" ]; then
  ls "$KAFKA_HOME"/libs/kafka_2.13-*.jar >/dev/null 2>&1 || die "KAFKA_HOME=$KAFKA_HOME has no libs/kafka_2.13-*.jar"
  echo "$KAFKA_HOME"
  exit 0
fi

# Bump when the dependency list below changes, so old caches are refreshed.
RECIPE=2
home="$CACHE/kafka-$KAFKA_VERSION"
if [ "$(cat "$home/.complete" 2>/dev/null)" = "$RECIPE" ]; then
  echo "$home"
  exit 0
fi

command -v mvn >/dev/null 2>&1 || die "mvn not found: install Maven (Debian: apt-get install maven)"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat > "$work/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>fink.local</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>${KAFKA_VERSION}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka-tools</artifactId>
      <version>${KAFKA_VERSION}</version>
    </dependency>
    <!-- Kafka 4 logs through SLF4J 2; pin it over the 1.7 that transitive deps pull in. -->
    <dependency>
      <groupId>org.slf4j</groupId>
      <artifactId>slf4j-api</artifactId>
      <version>2.0.17</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j2-impl</artifactId>
      <version>2.24.3</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-core</artifactId>
      <version>2.24.3</version>
    </dependency>
  </dependencies>
</project>
POM
echo "install_kafka: fetching Apache Kafka ${KAFKA_VERSION} jars from Maven Central..." >&2
rm -rf "$home.tmp"
mkdir -p "$home.tmp/libs"
mvn -q -B -f "$work/pom.xml" dependency:copy-dependencies \
  -DincludeScope=runtime -DoutputDirectory="$home.tmp/libs" >&2 \
  || die "Maven could not fetch org.apache.kafka:kafka_2.13:${KAFKA_VERSION} (offline with an empty cache?)"
ls "$home.tmp"/libs/kafka_2.13-*.jar >/dev/null 2>&1 || die "kafka_2.13 jar missing after fetch"
echo "$KAFKA_VERSION" > "$home.tmp/VERSION"
echo "$RECIPE" > "$home.tmp/.complete"
rm -rf "$home"
mv "$home.tmp" "$home"
echo "$home"
