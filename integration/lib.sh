# Shared by the benchmarks that follow a folder with `fink run` and time
# arrivals with a read_committed consumer (bench_latency.sh,
# bench_visits.sh). Source it from the repository root:
#   . integration/lib.sh; bench_setup
# Sets REPO, FINK (FINK_BIN if set) and a work folder (the current directory afterwards),
# removed on exit unless KEEP=1, with the cluster stopped and the consumer
# and `fink run` (pids in $cons and $runpid) killed.

bench_setup() {
  REPO=$PWD
  bash conf/install_deps.sh >/dev/null || exit 1
  bash conf/install_kafka.sh >/dev/null || exit 1
  bash conf/install_python.sh fink_client=fink-client pyarrow=pyarrow || exit 1
  bash conf/install_python_filters.sh || exit 1
  cargo build --release -q || exit 1
  # FINK_BIN: another build of fink to compare (say, main's) on the same run.
  FINK=${FINK_BIN:-$REPO/target/release/fink}
  work=$(mktemp -d)
  trap bench_cleanup EXIT
  cd "$work" || exit 1
}

bench_cleanup() {
  [ -n "${cons:-}" ] && kill "$cons" 2>/dev/null
  [ -n "${runpid:-}" ] && kill "$runpid" 2>/dev/null
  "$FINK" --config "$work/fink.toml" cluster stop --grace 10 >/dev/null 2>&1
  if [ -n "${KEEP:-}" ]; then echo "kept $work"; else rm -rf "$work"; fi
}

# The deployment part of fink.toml: a one-node cluster on PORT (its
# controller on CONTROLLER), metrics on METRICS, Python filters in the
# project's venv. Top-level keys (scope, include) come before it.
bench_cluster_toml() { # PORT CONTROLLER METRICS
  cat <<TOML
[cluster]
bootstrap = ["127.0.0.1:$1"]
timeout_secs = 60
[cluster.admin]
user = "admin"
password = { file = "secrets/admin.pw", generate = true }
[local]
port = $1
controller_port = $2
data_dir = "data"
heap = "1g"
[python]
interpreter = "$REPO/.fink/venv/bin/python"
${PYTHON_EXTRA:-}
[run]
state_dir = "state"
metrics_addr = "127.0.0.1:$3"
${RUN_EXTRA:-}
TOML
}

# One topic (2 partitions unless PARTITIONS) and one unfiltered Parquet stream into it.
one_stream_toml() { # TOPIC STREAM SOURCE_PATH [PARTITIONS, default 2]
  printf '[[topic]]\nname = "%s"\npartitions = %s\n[[stream]]\nname = "%s"\n' "$1" "${4:-2}" "$2"
  printf 'source = { format = "parquet", path = "%s" }\ntopic = "%s"\n' "$3" "$1"
}

# A read_committed consumer logging each alert's arrival to arrivals.txt,
# ready (subscribed) when this returns.
start_consumer() { # BOOTSTRAP TOPIC...
  "$REPO/.fink/venv/bin/python" "$REPO/integration/python/visit_consumer.py" "$1" admin secrets/admin.pw \
    arrivals.txt "${@:2}" > consumer.log 2>&1 &
  cons=$!
  until grep -q ready consumer.log 2>/dev/null; do
    kill -0 "$cons" 2>/dev/null || { cat consumer.log; exit 1; }
    sleep 0.2
  done
}

# Wait (up to 2 minutes) until every stream of the run whose status is on
# METRICS runs (its producer logged in); leaves the status in status.json.
wait_streams_running() { # METRICS
  for _ in $(seq 1 600); do
    curl -sf "http://127.0.0.1:$1/status" > status.json 2>/dev/null &&
      python3 -c "import json,sys; s=json.load(open('status.json')); sys.exit(0 if s['streams'] and all(x['state']['state'] in ('idle','running') for x in s['streams']) else 1)" 2>/dev/null &&
      return 0
    sleep 0.2
  done
}
