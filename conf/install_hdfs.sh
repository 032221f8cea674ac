#!/usr/bin/env bash
# Install Hadoop's MiniDFSCluster jars (org.apache.hadoop:hadoop-client-minicluster)
# from Maven Central into a cache outside the repo, for tests and benchmarks
# of HDFS sources. fink itself needs no JVM: its HDFS client is pure Rust.
# Idempotent. Prints the directory holding the jars on its last line.
#
#   HADOOP_VERSION  default below
#   FINK_CACHE      cache root (default ~/.cache/fink)
set -euo pipefail

HADOOP_VERSION="${HADOOP_VERSION:-3.4.2}"
CACHE="${FINK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/fink}"
die() { echo "install_hdfs: $*" >&2; exit 1; }

RECIPE=1
home="$CACHE/hadoop-minicluster-$HADOOP_VERSION"
if [ "$(cat "$home/.complete" 2>/dev/null)" = "$RECIPE" ]; then
  echo "$home/libs"
  exit 0
fi
command -v mvn >/dev/null 2>&1 || die "mvn not found: install Maven (Debian: apt-get install maven)"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat > "$work/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>fink.local</groupId>
  <artifactId>hdfs-runtime</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.hadoop</groupId>
      <artifactId>hadoop-client-minicluster</artifactId>
      <version>${HADOOP_VERSION}</version>
    </dependency>
  </dependencies>
</project>
POM
echo "install_hdfs: fetching hadoop-client-minicluster ${HADOOP_VERSION} from Maven Central..." >&2
rm -rf "$home.tmp"
mkdir -p "$home.tmp/libs"
mvn -q -B -f "$work/pom.xml" dependency:copy-dependencies \
  -DincludeScope=runtime -DoutputDirectory="$home.tmp/libs" >&2 \
  || die "Maven could not fetch org.apache.hadoop:hadoop-client-minicluster:${HADOOP_VERSION}"
ls "$home.tmp"/libs/hadoop-client-minicluster-*.jar >/dev/null 2>&1 || die "minicluster jar missing after fetch"
echo "$RECIPE" > "$home.tmp/.complete"
rm -rf "$home"
mv "$home.tmp" "$home"
echo "$home/libs"
