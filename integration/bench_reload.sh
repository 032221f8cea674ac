#!/usr/bin/env bash
# Reload latency: time from saving fink.toml (rename-style, as editors do) to
# the first alert published under the new filter, while new alert files keep
# arriving; median over EDITS edits (default 20). Baseline measured in the
# same run: the latency of a new file's first alert with no edit (how long
# the live stream takes to pick up and publish fresh data).
# Runs its own one-node cluster on ports 59092/59192.
set -uo pipefail
cd "$(dirname "$0")/.."
EDITS=${EDITS:-20}
# What a fresh machine lacks (Java, python3-venv), as .ci/run installs it.
bash conf/install_deps.sh >/dev/null || exit 1
cargo build --release -q || exit 1
FINK=$PWD/target/release/fink
work=$(mktemp -d)
cleanup() {
  [ -f "$work/run.pid" ] && kill "$(cat "$work/run.pid")" 2>/dev/null
  [ -f "$work/feed.pid" ] && kill "$(cat "$work/feed.pid")" 2>/dev/null
  "$FINK" --config "$work/fink.toml" cluster stop --grace 10 >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT
cd "$work"
config() { # $1 = fid the filter keeps
  cat <<TOML
[cluster]
bootstrap = ["127.0.0.1:59092"]
[cluster.admin]
user = "admin"
password = { file = "secrets/admin.pw", generate = true }
[local]
port = 59092
controller_port = 59192
data_dir = "data"
[run]
state_dir = "state"
metrics_addr = "127.0.0.1:59464"
[[topic]]
name = "reload_bench"
[[stream]]
name = "live"
source = { format = "parquet", path = "src" }
topic = "reload_bench"
filter = "candidate.fid == $1"
producer = { linger_ms = 5 }
TOML
}
config 1 > fink.toml
"$FINK" cluster start >/dev/null || exit 1
"$FINK" apply --auto-approve >/dev/null 2>&1 || exit 1
mkdir -p src
# A feed of fresh alerts: a 20-alert file every 200 ms.
( i=0; while true; do i=$((i+1)); "$FINK" simulate --out "feed/$i" --alerts 20 --per-file 20 --seed "$i" >/dev/null 2>&1; mkdir -p "src/$i"; mv "feed/$i"/*/*.parquet "src/$i/"; sleep 0.2; done ) &
echo $! > feed.pid
"$FINK" run --no-progress > run.log 2>&1 &
echo $! > run.pid
python3 -m venv venv >/dev/null && venv/bin/pip install -q fastavro confluent-kafka >/dev/null 2>&1
sleep 2
cat > measure.py <<'PY'
import io, json, os, statistics, subprocess, sys, time
import fastavro
from confluent_kafka import Consumer, TopicPartition, OFFSET_END
edits = int(sys.argv[1]); pw = open("secrets/admin.pw").read().strip()
c = Consumer({"bootstrap.servers": "127.0.0.1:59092", "security.protocol": "SASL_PLAINTEXT", "sasl.mechanisms": "SCRAM-SHA-512",
              "sasl.username": "admin", "sasl.password": pw, "group.id": "reload-bench", "enable.auto.commit": False})
c.assign([TopicPartition("reload_bench", 0, OFFSET_END)])
schemas = {}
def fid_of(m):
    k = m.key()
    if k not in schemas:
        schemas[k] = fastavro.parse_schema(json.loads(k))
    return fastavro.schemaless_reader(io.BytesIO(m.value()), schemas[k])["candidate"]["fid"]
def wait_for(fid, t0, limit=30):
    while time.time() - t0 < limit:
        m = c.poll(0.05)
        if m is None or m.error():
            continue
        if fid_of(m) == fid:
            return time.time() - t0
    return float("nan")
# Baseline: with fid == 1 running, how long until a fid-1 alert shows up from "now".
base = [wait_for(1, time.time()) for _ in range(edits)]
lat = []
fid = 1
for k in range(edits):
    fid = 2 if fid == 1 else 1
    text = open("fink.toml").read().replace(f"candidate.fid == {3 - fid}", f"candidate.fid == {fid}")
    open(".fink.toml.new", "w").write(text)
    t0 = time.time()
    os.rename(".fink.toml.new", "fink.toml")
    lat.append(wait_for(fid, t0))
    time.sleep(0.3)
med = statistics.median(lat); bmed = statistics.median(base)
print(f"edits: {edits}; reload latency (save -> first alert under the new filter): median {med*1000:.0f} ms, "
      f"p90 {sorted(lat)[int(0.9*len(lat))-1]*1000:.0f} ms, max {max(lat)*1000:.0f} ms")
print(f"baseline (no edit: wait for the next matching alert): median {bmed*1000:.0f} ms; reload overhead ~{(med-bmed)*1000:.0f} ms")
print(f"goal < 1 s: {'met' if med < 1.0 else 'MISSED'}")
PY
venv/bin/python measure.py "$EDITS"
reloads=$(curl -s 127.0.0.1:59464/status 2>/dev/null | python3 -c "import json,sys; print(json.load(sys.stdin)['config']['reloads'])" 2>/dev/null)
echo "reloads seen by fink run: ${reloads:-?} (expected $EDITS)"
