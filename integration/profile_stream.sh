#!/usr/bin/env bash
# Where one stream's time goes: `perf` samples `fink run --until-idle`
# publishing ALERTS simulated alerts (SURVEY lsst: Rubin-size, ~176 KB; or
# ztf) unfiltered through one exactly-once stream, and this script sorts
# fink's CPU into stages by the function each sample was in (self time):
# read + decode (parquet, snappy, arrow), filter (CEL), project (arrow
# select), Avro encode (arrow-avro), produce (librdkafka, zstd), memory
# (allocator, copies), the kernel (I/O, network, scheduling), other. The
# broker's CPU over the same run comes from /proc, so both shares of the
# machine's cores show side by side; then the transport ceiling on the same
# values (integration/python/ceiling.py). Its own one-node cluster, ports
# 49095/49195.
#   SURVEY=lsst ALERTS=4000 integration/profile_stream.sh
# KEEP=1 keeps perf.data and the reports.
set -uo pipefail
cd "$(dirname "$0")/.."
SURVEY=${SURVEY:-lsst}
ALERTS=${ALERTS:-4000}
# As the shipped catalogues: 10 partitions a Rubin topic, 2 a ZTF one.
PARTITIONS=${PARTITIONS:-$([ "$SURVEY" = lsst ] && echo 10 || echo 2)}
. integration/lib.sh
command -v perf >/dev/null || { echo "perf is not installed (linux-perf / linux-tools)"; exit 1; }
bench_setup

{
  echo 'scope = ["profile_*"]'
  bench_cluster_toml 49095 49195 49096
  one_stream_toml profile_all all alerts "$PARTITIONS"
  # STREAM_EXTRA: more keys for the stream, e.g. producer properties.
  printf '%s\n' "${STREAM_EXTRA:-}"
} > fink.toml
"$FINK" cluster start >/dev/null 2>&1 || exit 1
"$FINK" apply --auto-approve >/dev/null 2>&1 || exit 1
"$FINK" simulate --survey "$SURVEY" --alerts "$ALERTS" --per-file 1000 --seed 5 --out alerts >/dev/null || exit 1
du -sh alerts | awk '{print "source: " $1 " of Parquet"}'
# Untimed warm-up into another topic: a fresh broker (cold JVM) is slower
# than the long-running service fink publishes to.
sed -e 's/profile_all/profile_warm/' -e 's/^state_dir = "state"/state_dir = "warm-state"\ngroup = "warm"/' fink.toml > warm.toml
printf '[[topic]]\nname = "profile_all"\npartitions = %s\n' "$PARTITIONS" >> warm.toml
"$FINK" --config warm.toml apply --auto-approve >/dev/null 2>&1 || exit 1
"$FINK" --config warm.toml run --until-idle --no-progress > warm.log 2>&1 || { tail warm.log; exit 1; }
broker=$(pgrep -f "kafka.Kafka.*$work" | head -1)
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
b0=$(ticks "$broker")
t0=$(date +%s.%N)
perf record -q -F 499 -o perf.data -- /usr/bin/time -f "%U %S" -o time.txt "$FINK" run --until-idle --no-progress \
  --output json > run.json 2> run.log || { tail run.log; exit 1; }
t1=$(date +%s.%N)
b1=$(ticks "$broker")
# The transport ceiling on the same values: what fink published, sent
# again from memory with fink's producer settings, in its own process.
printf '[[topic]]\nname = "profile_ceiling"\npartitions = %s\n' "$PARTITIONS" >> fink.toml
"$FINK" apply --auto-approve >/dev/null 2>&1 || exit 1
read -r ceil_t ceil_n _ < <("$REPO/.fink/venv/bin/python" "$REPO/integration/python/ceiling.py" 127.0.0.1:49095 \
  secrets/admin.pw profile_all profile_ceiling "$PARTITIONS") || { echo "ceiling failed"; exit 1; }
echo "$ceil_t $ceil_n" > ceiling.txt
perf report -i perf.data --no-children --sort comm,dso,sym --stdio --percent-limit 0 2> /dev/null > report.txt
python3 - "$t0" "$t1" "$(( b1 - b0 ))" "$hz" "$ALERTS" "$SURVEY" <<'PY'
import re, sys
t0, t1, bticks, hz, alerts, survey = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
wall = t1 - t0
stages = [
    ("read + decode (parquet, snappy, arrow)", r"parquet::|snap::|snappy|arrow_buffer|arrow_data|arrow_array|arrow_schema|arrow_cast|fink::stream::(source|shared|prefetch|store)"),
    ("filter (CEL)", r"cel::|cel_|fink::stream::filter"),
    ("project (arrow select)", r"arrow_select|fink::stream::project"),
    ("Avro encode (arrow-avro)", r"arrow_avro|fink::stream::encode"),
    ("produce (librdkafka, zstd)", r"rd_kafka|rdkafka|ZSTD|zstd|HUF_|FSE_|crc32c|rd_"),
    ("memory (allocator, copies)", r"je_|jemalloc|_rjem|malloc|free|memcpy|memmove|memset|realloc"),
]
total = 0.0
shares = {name: 0.0 for name, _ in stages}
shares["kernel (I/O, network, scheduling)"] = 0.0
shares["other"] = 0.0
threads = {}
for line in open("report.txt"):
    m = re.match(r"\s+([\d.]+)%\s+(\S+)\s+(\S+)\s+\[(.)\]\s+(.*)", line)
    if not m:
        continue
    pct, comm, dso, kind, sym = float(m.group(1)), m.group(2), m.group(3), m.group(4), m.group(5)
    total += pct
    threads[comm] = threads.get(comm, 0.0) + pct
    if kind == "k":
        shares["kernel (I/O, network, scheduling)"] += pct
        continue
    for name, pat in stages:
        if re.search(pat, sym) or (name.startswith("produce") and "librdkafka" in dso):
            shares[name] += pct
            break
    else:
        shares["other"] += pct
user, system = open("time.txt").read().split()[-2:]
fink_cpu = float(user) + float(system)
broker_cpu = bticks / hz
print(f"{alerts:,} {survey} alerts, one unfiltered exactly-once stream: {wall:.1f} s wall, {alerts / wall:,.0f} alerts/s")
print(f"CPU over the run: fink {fink_cpu:.1f} s, broker {broker_cpu:.1f} s, of {2 * wall:.1f} core-seconds on 2 cores")
print(f"  fink {fink_cpu / (2 * wall):.0%} of the machine, broker {broker_cpu / (2 * wall):.0%}")
ceil_t, ceil_n = open("ceiling.txt").read().split()
ceiling = int(ceil_n) / float(ceil_t)
print(f"transport ceiling, the same {int(ceil_n):,} values from memory: {ceiling:,.0f} records/s; fink / ceiling = {alerts / wall / ceiling:.2f} (fink's startup included)")
print("fink's CPU by stage (self time of the sampled function):")
for name, pct in sorted(shares.items(), key=lambda kv: -kv[1]):
    print(f"  {pct / max(total, 1e-9):6.1%}  {name}")
import json
busy = json.load(open("run.json"))["streams"][0]["stats"].get("stage_seconds", {})
streaming = sum(busy.values())
if streaming > 0:
    print(f"from its first file to its last commit ({streaming:.1f} s, startup excluded as for the ceiling): "
          f"{alerts / streaming:,.0f} alerts/s; fink / ceiling = {alerts / streaming / ceiling:.2f}")
print("the stream's thread by stage, wall seconds (waits included):")
for name, secs in sorted(busy.items(), key=lambda kv: -kv[1]):
    print(f"  {secs:6.1f} s {secs / wall:6.1%}  {name}")
print("fink's CPU by thread:")
for comm, pct in sorted(threads.items(), key=lambda kv: -kv[1])[:6]:
    print(f"  {pct / max(total, 1e-9):6.1%}  {comm}")
PY
