#!/usr/bin/env bash
# Start or stop the test stores: an S3-compatible server (moto, signatures
# checked) and an HDFS MiniDFSCluster (namenode + datanode). `start` writes
# their addresses and the S3 key to .fink/stores/env (FINK_TEST_S3_*,
# FINK_TEST_HDFS) for tests and benchmarks to source.
#
#   integration/stores.sh start|stop
#   S3_PORT (29500), HDFS_PORT (29400)
set -euo pipefail
cd "$(dirname "$0")/.."
dir=.fink/stores
S3_PORT="${S3_PORT:-29500}"
HDFS_PORT="${HDFS_PORT:-29400}"

stop_one() {
  local pidfile="$dir/$1.pid"
  [ -f "$pidfile" ] || return 0
  local pid; pid=$(cat "$pidfile")
  if kill "$pid" 2>/dev/null; then
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

await() { # name logfile seconds
  for _ in $(seq $(( $3 * 10 ))); do
    grep -q '^ready' "$2" 2>/dev/null && return 0
    kill -0 "$(cat "$dir/$1.pid")" 2>/dev/null || break
    sleep 0.1
  done
  echo "stores: $1 did not start; its log:" >&2
  tail -40 "$2" >&2
  return 1
}

case "${1:-}" in
  start)
    "$0" stop
    mkdir -p "$dir"
    # What a fresh checkout lacks: Java, the venv with moto, Hadoop's jars.
    bash conf/install_deps.sh >/dev/null
    bash conf/install_python.sh 'moto=moto[server]' boto3=boto3
    python=.fink/venv/bin/python
    libs=$(bash conf/install_hdfs.sh)
    rm -rf "$dir/hdfs" "$dir/s3.env"
    setsid "$python" integration/s3/moto_s3.py "$S3_PORT" "$dir/s3.env" >"$dir/s3.log" 2>&1 &
    echo $! > "$dir/s3.pid"
    setsid java -Xmx1g -cp "$libs/*" integration/hdfs/MiniHdfs.java "$HDFS_PORT" "$dir/hdfs" >"$dir/hdfs.log" 2>&1 &
    echo $! > "$dir/hdfs.pid"
    await s3 "$dir/s3.log" 60
    await hdfs "$dir/hdfs.log" 120
    { cat "$dir/s3.env"; echo "FINK_TEST_HDFS=hdfs://127.0.0.1:$HDFS_PORT"; echo "FINK_TEST_HDFS_LIBS=$libs"; } > "$dir/env"
    echo "stores: S3 on 127.0.0.1:$S3_PORT, HDFS on 127.0.0.1:$HDFS_PORT ($dir/env)"
    ;;
  stop)
    stop_one s3
    stop_one hdfs
    ;;
  *)
    echo "usage: $0 start|stop" >&2
    exit 2
    ;;
esac
