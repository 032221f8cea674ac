#!/usr/bin/env bash
# The Python topics of Fink's LSST catalogue (conf/fink/lsst.toml: the six
# fink-filters functions, each on its own stream and topic) over ALERTS
# Rubin-size alerts, `fink run --until-idle`, exactly-once, with
# `[python] share_conversions` off (each call converts its own arguments to
# pandas, the baseline) and on (a worker converts a batch's column once for
# every filter that reads it), alternated RUNS times in one run.
# Reports wall seconds, CPU-seconds of fink and its workers, and the
# workers' conversion and function seconds (from /metrics), medians.
#   ALERTS=4000 RUNS=2 integration/bench_python.sh
set -uo pipefail
cd "$(dirname "$0")/.."
ALERTS=${ALERTS:-4000}
RUNS=${RUNS:-2}
. integration/lib.sh
bench_setup

"$FINK" simulate --survey lsst --alerts "$ALERTS" --per-file 1000 --seed 7 --out alerts >/dev/null || exit 1
du -sh alerts | awk '{print "source: " $1 " of Parquet"}'
python3 - "$REPO/conf/fink/lsst.toml" > python_topics.toml <<'PY'
import json, sys, tomllib
c = tomllib.load(open(sys.argv[1], "rb"))
py = {k: v for k, v in c["filter"].items() if "python" in v}
for s in c["stream"]:
    f = [x for x in s.get("filters", []) if x in py]
    if not f:
        continue
    print(f'[[topic]]\nname = "{s["topic"]}"\npartitions = 10\n')
    for x in f:
        print(f'[filter.{x}]\npython = {json.dumps(py[x]["python"])}')
        if "fields" in py[x]:
            print("fields = { " + ", ".join(f"{k} = {json.dumps(v)}" for k, v in py[x]["fields"].items()) + " }")
        print()
    print(f'[[stream]]\nname = "{s["name"]}"\nsource = {{ format = "parquet", path = "alerts" }}\n'
          f'topic = "{s["topic"]}"\nfilters = {json.dumps(f)}\n')
PY
config() { # SHARE GROUP
  echo 'scope = ["fink_*"]'
  bench_cluster_toml 49095 49195 49096 | sed "s/^\[python\]$/[python]\nshare_conversions = $1/"
  echo "group = \"$2\""
  cat python_topics.toml
}
config true g0 > fink.toml
"$FINK" cluster start >/dev/null 2>&1 || exit 1
"$FINK" apply --auto-approve >/dev/null 2>&1 || exit 1
echo "streams: $(grep -c '^\[\[stream\]\]' python_topics.toml)"

# prints "wall cpu convert function reused"
run_once() { # SHARE GROUP
  config "$1" "$2" > fink.toml
  rm -rf state
  /usr/bin/time -f "%e %U %S" -o time.txt "$FINK" run --until-idle --no-progress > run.log 2>&1 &
  local pid=$! m=""
  # The last /metrics before the run ends.
  while kill -0 "$pid" 2>/dev/null; do
    curl -sf http://127.0.0.1:49096/metrics > m.txt 2>/dev/null && cp m.txt metrics.txt
    sleep 0.5
  done
  wait "$pid" || { tail -20 run.log >&2; return 1; }
  python3 - <<'PYX'
import re
wall, user, sys_ = map(float, open("time.txt").read().split()[-3:])
m = open("metrics.txt").read()
s = lambda name: sum(float(x) for x in re.findall(r"^" + name + r"\{[^}]*\} (\S+)$", m, re.M))
print(wall, user + sys_, s("fink_python_filter_convert_seconds_total"), s("fink_python_filter_seconds_total"),
      int(s("fink_python_filter_columns_reused_total")))
PYX
}
declare -a off on
for r in $(seq 1 "$RUNS"); do
  read -r line < <(run_once false "off$r") || exit 1
  off+=("$line"); echo "run $r, share_conversions = false: wall, CPU, convert, function s, reused: $line"
  read -r line < <(run_once true "on$r") || exit 1
  on+=("$line"); echo "run $r, share_conversions = true:  wall, CPU, convert, function s, reused: $line"
done
python3 - "$ALERTS" "$(printf '%s\n' "${off[@]}")" "$(printf '%s\n' "${on[@]}")" <<'PY'
import statistics, sys
n = int(sys.argv[1])
med = lambda rows: [statistics.median(float(r.split()[i]) for r in rows) for i in range(5)]
off, on = med(sys.argv[2].splitlines()), med(sys.argv[3].splitlines())
print(f"\nmedians, {n} Rubin alerts, the LSST catalogue's Python topics:")
for name, x in (("each call converts", off), ("shared conversions", on)):
    print(f"  {name:20s} {n / x[0]:6.0f} alerts/s  {x[1] / n * 10000:6.1f} CPU-s per 10,000  "
          f"convert {x[2]:6.1f} s  functions {x[3]:6.1f} s  columns reused {x[4]:.0f}")
print(f"shared / each: throughput {off[0] / on[0]:.2f}x, CPU {on[1] / off[1]:.2f}x, conversion seconds {on[2] / off[2]:.2f}x")
PY
