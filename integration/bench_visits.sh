#!/usr/bin/env bash
# Rubin visits through Fink's whole LSST catalogue (conf/fink/lsst.toml, 13
# topics, 6 of them Python), as they land: VISITS visits of ALERTS alerts (and one of
# BIG alerts), one every PERIOD seconds, each written as Fink's pipeline
# writes a night folder: FILES Parquet part files, each under a temporary
# name, then renamed, with random (Spark-like) names. `fink run` follows
# the folder with the [run] defaults (exactly-once). A read_committed
# consumer (integration/python/visit_consumer.py, as fink-client reads)
# logs when each alert becomes readable.
#
# Reports, per visit: the latency from its last file landing to its last
# alert readable on any topic (p50, p98, max), the 40,000-alert visit on
# its own; fink's CPU-seconds per 10,000 alerts and its peak RSS; and
# whether any stream reported stalled. Runs its own one-node cluster on
# ports 49093/49193.
#   VISITS=20 ALERTS=10000 BIG=40000 PERIOD=37 integration/bench_visits.sh
# KEEP=1 keeps the work folder (logs, arrivals) for a look afterwards.
# RUN_EXTRA and PYTHON_EXTRA add lines to [run] and [python] (e.g.
# RUN_EXTRA='batch_size = 96') to compare settings on the same workload.
set -uo pipefail
cd "$(dirname "$0")/.."
VISITS=${VISITS:-20}
ALERTS=${ALERTS:-10000}
BIG=${BIG:-40000}
PERIOD=${PERIOD:-37}
FILES=${FILES:-4}
. integration/lib.sh
bench_setup

# Rubin-size alerts fill a disk fast (a visit publishes ~2 GB over the 13
# topics): the topics keep 2 minutes, in segments of 20 s, as the consumer
# reads them at once.
sed -e 's#path = "\.fink/demo/lsst"#path = "visits"#' \
  -e 's#^partitions = 10$#partitions = 10\nconfig = { "retention.ms" = 120000, "segment.ms" = 20000 }#' \
  "$REPO/conf/fink/lsst.toml" > lsst.toml
{
  echo 'include = ["lsst.toml"]'
  echo 'scope = ["fink_*_lsst"]'
  bench_cluster_toml 49093 49193 49094
} > fink.toml
"$FINK" cluster start >/dev/null 2>&1 || exit 1
"$FINK" apply --auto-approve >/dev/null 2>&1 || exit 1
topics=$(grep -o '^name = "fink_[a-z0-9_]*_lsst"' lsst.toml | cut -d'"' -f2)

echo "generating $VISITS visits of $ALERTS alerts and one of $BIG..."
for v in $(seq 1 $((VISITS + 1))); do
  n=$ALERTS
  [ "$v" -eq $((VISITS + 1)) ] && n=$BIG
  "$FINK" simulate --survey lsst --alerts "$n" --per-file $(((n + FILES - 1) / FILES)) --seed "$((1000 + v))" \
    --out "gen/$v" >/dev/null || exit 1
done
du -sh gen | awk '{print "source: " $1 " of Parquet"}'
mkdir -p visits/20261204

start_consumer 127.0.0.1:49093 $topics

/usr/bin/time -f "%e %U %S %M" -o time.txt "$FINK" run --no-progress > run.log 2>&1 &
runpid=$!
# Peak RSS per process of fink's tree (fink itself, each Python worker),
# sampled every 0.5 s with the time: /usr/bin/time only gives the largest
# process's, and not when.
(
  while kill -0 "$runpid" 2>/dev/null; do
    ps -e -o pid=,ppid=,rss=,comm= 2>/dev/null | awk -v root="$runpid" -v t="$(date +%s.%N)" '
      { parent[$1] = $2; rss[$1] = $3; comm[$1] = $4 }
      END { for (p in rss) { q = p; while (q != "" && q != 0 && q != root) q = parent[q];
            if (q == root) print t, p, comm[p], rss[p] } }'
    sleep 0.5
  done
) > rss_samples.txt &
# Every stream running (its producer logged in) before the first visit.
wait_streams_running 49094

: > landed.txt
for v in $(seq 1 $((VISITS + 1))); do
  start=$(date +%s.%N)
  k=0
  for f in gen/"$v"/*/*.parquet; do
    k=$((k + 1))
    name="part-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')-c000.snappy.parquet"
    mkdir -p visits/20261204/_temporary
    # Moved, not copied: a Rubin visit is ~900 MB of Parquet.
    mv "$f" "visits/20261204/_temporary/$name"
    mv "visits/20261204/_temporary/$name" "visits/20261204/$name"
    echo "$v $(date +%s.%N) visits/20261204/$name" >> landed.txt
  done
  echo "visit $v landed ($k files)"
  # The next visit PERIOD s after this one started; the big one last.
  left=$(python3 -c "import sys,time; print(max(0.0, float(sys.argv[1]) + float(sys.argv[2]) - time.time()))" "$start" "$PERIOD")
  [ "$v" -le "$VISITS" ] && sleep "$left"
done
# The consumer has seen everything once nothing new arrives for 30 s.
prev=-1
while true; do
  sleep 10
  now=$(wc -l < arrivals.txt)
  [ "$now" -eq "$prev" ] && [ "$(find arrivals.txt -mmin -0.5 | wc -l)" -eq 0 ] && break
  prev=$now
done
curl -sf http://127.0.0.1:49094/status > status.json
curl -sf http://127.0.0.1:49094/metrics > metrics.txt || true
kill "$cons"; wait "$cons"; cons=
# fink is time's only child (named as its binary, FINK_BIN may differ).
child=$(pgrep -P "$runpid" | head -1)
kill -TERM "${child:-$runpid}"; wait "$runpid"; runpid=

"$REPO/.fink/venv/bin/python" - "$ALERTS" "$BIG" "$VISITS" <<'PY'
import collections, glob, json, sys
import pyarrow.parquet as pq

alerts, big, visits = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
landed = {}
visit_of = {}
for line in open("landed.txt"):
    v, t, f = line.split()
    v, t = int(v), float(t)
    landed[v] = max(landed.get(v, 0.0), t)
    for sid in pq.read_table(f, columns=["diaSourceId"]).column(0).to_pylist():
        visit_of[sid] = v
last = collections.defaultdict(float)
count = collections.Counter()
unknown = 0
for line in open("arrivals.txt"):
    topic, sid, t = line.split()
    v = visit_of.get(int(sid))
    if v is None:
        unknown += 1
        continue
    last[v] = max(last[v], float(t))
    count[v] += 1
lat = sorted(last[v] - landed[v] for v in range(1, visits + 1) if v in last)
if not lat:
    sys.exit("no alert of any visit was read: see consumer.log and run.log")
def pct(p):
    return lat[min(len(lat) - 1, int(round(p / 100 * (len(lat) - 1))))]
secs, user, system, rss = open("time.txt").read().split()[-4:]
cpu = float(user) + float(system)
total = alerts * visits + big
status = json.load(open("status.json"))
stalled = [s["name"] for s in status["streams"] if s.get("stalled_secs") or s["state"]["state"] not in ("idle", "running")]
print(f"visits of {alerts:,} alerts: {len(lat)} measured, records on the topics per visit: median {sorted(count[v] for v in range(1, visits + 1))[visits // 2]}")
print(f"latency, last file landed -> last alert readable (read_committed), over {len(lat)} visits:")
print(f"  p50 {pct(50):.2f} s, p98 {pct(98):.2f} s, max {lat[-1]:.2f} s (goal: p98 <= 5 s)")
b = visits + 1
if b in last:
    print(f"the {big:,}-alert visit: {last[b] - landed[b]:.2f} s (goal <= 20 s)")
print(f"fink run: {cpu:.1f} CPU-seconds for {total:,} alerts = {cpu / total * 10000:.2f} per 10,000; peak RSS {int(rss) / 1024:.0f} MB (goal <= 500 MB)")
peak = {}
samples = []
for line in open("rss_samples.txt"):
    t, pid, comm, kb = line.split()
    key = (comm, pid)
    peak[key] = max(peak.get(key, 0), int(kb))
    samples.append((float(t), pid, int(kb)))
if peak:
    print("peak RSS per process: " + ", ".join(f"{c} {kb / 1024:.0f} MB" for (c, _), kb in sorted(peak.items(), key=lambda kv: -kv[1]) if c != "time"))
# fink's own peak while each visit is served: from its first file landing
# to the next visit's (the last visit: to the end).
fink_pid = max(peak, key=lambda k: peak[k] if k[0] != "time" and not k[0].startswith("python") else -1)[1]
first = {}
for line in open("landed.txt"):
    v, t, _ = line.split()
    first[int(v)] = min(first.get(int(v), float("inf")), float(t))
per = {}
for v in sorted(first):
    end = first.get(v + 1, float("inf"))
    kbs = [kb for t, pid, kb in samples if pid == fink_pid and first[v] <= t < end]
    if kbs:
        per[v] = max(kbs) / 1024
small = sorted(per[v] for v in per if v <= visits)
if small:
    line = f"fink's peak RSS per visit of {alerts:,}: median {small[len(small) // 2]:.0f} MB, {small[0]:.0f}-{small[-1]:.0f} MB"
    line += f" (first visit {per.get(1, 0):.0f} MB); the {big:,}-alert visit: {per.get(visits + 1, 0):.0f} MB"
    print(line)
print(f"streams stalled or failed at the end: {stalled or 'none'}; records not from a landed visit: {unknown}")
# Where the streams' threads spent their time (waits included), summed.
stages = {}
for s in status["streams"]:
    for k, v in s["stats"].get("stage_seconds", {}).items():
        stages[k] = stages.get(k, 0.0) + v
if stages:
    print("the streams' threads, seconds summed over streams: " + ", ".join(f"{k} {v:.0f}" for k, v in sorted(stages.items(), key=lambda kv: -kv[1])))
# Files a stream decoded again on its own, having fallen behind the others.
alone = {s["name"]: s["stats"].get("files_read_alone", 0) for s in status["streams"]}
print(f"files read alone (decoded again): {sum(alone.values())} " + str({k: v for k, v in alone.items() if v}))
PY
# The Python filters' own time, from /metrics at the end.
grep -E '^fink_python_filter_(seconds|convert_seconds|columns_reused)_total' metrics.txt 2>/dev/null | sed 's/^/  /' || true
grep -E "stalled|ERROR" run.log | grep -v "│" | head -5 || true
