#!/usr/bin/env bash
# Latency of one stream, file landing -> alert readable: alerts land in a
# night folder at RATES alerts/s (each rate for SECONDS s), as FILES_PER_S
# Parquet files a second, each written under `_temporary/` and renamed.
# `fink run` (the [run] defaults: exactly-once) publishes them unfiltered;
# a read_committed consumer (integration/python/visit_consumer.py, as
# fink-client reads) logs when each alert becomes readable. Reports per
# rate the p50, p99 and max of (alert readable - its file renamed into
# place). Runs its own one-node cluster on ports 49095/49195.
#   RATES="50 1000" SECONDS_EACH=30 FILES_PER_S=5 integration/bench_latency.sh
# Goals (issue 22): p50 < 0.3 s at 50 alerts/s; p99 < 1 s at 1,000 alerts/s.
set -uo pipefail
cd "$(dirname "$0")/.."
RATES=${RATES:-50 1000}
SECONDS_EACH=${SECONDS_EACH:-30}
FILES_PER_S=${FILES_PER_S:-5}
. integration/lib.sh
bench_setup

{
  echo 'scope = ["bench_latency"]'
  bench_cluster_toml 49095 49195 49096
  one_stream_toml bench_latency s in
} > fink.toml
"$FINK" cluster start >/dev/null 2>&1 || exit 1
"$FINK" apply --auto-approve >/dev/null 2>&1 || exit 1
mkdir -p in/20261204/_temporary

echo "generating..."
for rate in $RATES; do
  per=$(( (rate + FILES_PER_S - 1) / FILES_PER_S ))
  "$FINK" simulate --alerts $((per * FILES_PER_S * SECONDS_EACH)) --per-file "$per" --seed "$rate" \
    --out "gen/$rate" >/dev/null || exit 1
done

start_consumer 127.0.0.1:49095 bench_latency
"$FINK" run --no-progress > run.log 2>&1 &
runpid=$!
wait_streams_running 49096

: > landed.txt
for rate in $RATES; do
  echo "landing $rate alerts/s for $SECONDS_EACH s..."
  # One file every 1/FILES_PER_S s, on a fixed schedule.
  python3 - "$rate" "$FILES_PER_S" gen/"$rate" in/20261204 landed.txt <<'PY'
import glob, os, shutil, sys, time
rate, per_s, src, dst, log = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
files = sorted(glob.glob(f"{src}/*/*.parquet"))
start = time.time()
with open(log, "a") as out:
    for i, f in enumerate(files):
        time.sleep(max(0.0, start + i / per_s - time.time()))
        name = "part-%016x-c000.snappy.parquet" % int.from_bytes(os.urandom(8), "big")
        tmp = f"{dst}/_temporary/{name}"
        shutil.copyfile(f, tmp)
        os.rename(tmp, f"{dst}/{name}")
        out.write(f"{rate} {time.time():.6f} {f}\n")
PY
done
# Everything landed is readable once nothing new arrives for 10 s.
prev=-1
while true; do
  sleep 5
  now=$(wc -l < arrivals.txt)
  [ "$now" -eq "$prev" ] && break
  prev=$now
done
kill "$cons"; wait "$cons"; cons=

"$REPO/.fink/venv/bin/python" - <<'PY'
import collections
import pyarrow.parquet as pq
landed, rate_of = {}, {}
for line in open("landed.txt"):
    rate, t, f = line.split()
    for cid in pq.read_table(f, columns=["candid"]).column(0).to_pylist():
        landed[cid] = float(t)
        rate_of[cid] = int(rate)
lat = collections.defaultdict(list)
seen = set()
for line in open("arrivals.txt"):
    _, cid, t = line.split()
    cid = int(cid)
    if cid in landed and cid not in seen:
        seen.add(cid)
        lat[rate_of[cid]].append(float(t) - landed[cid])
for rate in sorted(set(rate_of.values())):
    xs = sorted(lat[rate])
    n = sum(1 for r in rate_of.values() if r == rate)
    pct = lambda p: xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]
    print(f"{rate:>5} alerts/s: {len(xs):,} of {n:,} alerts read; latency p50 {pct(50):.2f} s, p99 {pct(99):.2f} s, max {xs[-1]:.2f} s")
PY
grep -E "WARN|ERROR" run.log | head -5
