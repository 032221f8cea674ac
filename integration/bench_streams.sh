#!/usr/bin/env bash
# Benchmark `fink run --until-idle`: N simulated ~70 KB alerts through one
# stream and through 10 filtered streams, against the local broker, with
# four baselines measured in the same run:
#   - the transport ceiling: the values fink published, sent again from
#     memory by a small librdkafka producer with fink's producer settings
#     (integration/python/ceiling.py);
#   - Fink's Spark distribution, write action alone: pyspark 3.5.7
#     local[2], fink_utils' get_kafka_df and Spark's Kafka sink
#     (integration/python/spark_write.py, jars by conf/install_spark_kafka.sh);
#   - the broker's ceiling: Kafka's own producer performance tool, same
#     count, record size, acks=all, compression (zstd level 1, fink's default);
#   - a Python pipeline doing the same work (pyarrow + fastavro + confluent-kafka).
# Also: exactly-once (the default) against at-least-once, and the same
# alerts in 5,000 small files against 20 files (progress stays small).
# Prints alerts/s, MB/s, peak RSS and the ratios. Runs its own one-node
# cluster on ports 49092/49192.
#   ALERTS=20000 RUNS=2 integration/bench_streams.sh
# SOURCE=s3 measures sources instead: one stream reading the alerts from
# the local S3 server (integration/stores.sh) against local disk, with and
# without the three cutouts (bytes read from the source, alerts/s).
# SOURCE=files measures only the many-small-files case: the same alerts in
# 20 files and in 5,000 files, one stream, exactly-once.
# SOURCE=python measures Python filters: sn_candidates as CEL and as
# fink-filters' function, the worker round trip against decoding, the
# complete ZTF catalogue with its workers' memory, and Spark local[2]
# running fink-filters' pandas UDFs for the same topics.
set -uo pipefail
cd "$(dirname "$0")/.."
ALERTS=${ALERTS:-20000}
RUNS=${RUNS:-2}
# What a fresh machine lacks (Java, python3-venv), as .ci/run installs it.
bash conf/install_deps.sh >/dev/null || exit 1
bash conf/install_python_filters.sh || exit 1
bash conf/install_python.sh confluent_kafka=confluent-kafka || exit 1
cargo build --release -q || exit 1
FINK=$PWD/target/release/fink
REPO=$PWD
work=$(mktemp -d)
trap '"$FINK" --config "$work/fink.toml" cluster stop --grace 10 >/dev/null 2>&1; rm -rf "$work"' EXIT
cd "$work"

header() {
  cat <<TOML
scope = ["bench_*"]
[cluster]
bootstrap = ["127.0.0.1:49092"]
timeout_secs = 60
[cluster.admin]
user = "admin"
password = { file = "secrets/admin.pw", generate = true }
[local]
port = 49092
controller_port = 49192
data_dir = "data"
heap = "1g"
[python]
interpreter = "$REPO/.fink/venv/bin/python"
[run]
state_dir = "state"
metrics_addr = ""
delivery = "${DELIVERY:-exactly-once}"
group = "${GROUP:-bench}"
TOML
}

# One unfiltered stream, or ten streams with different cuts.
config() { # $1 = tag, $2 = number of streams, SRC = source folder
  header
  local filters=("candidate.magpsf < 18.0" "candidate.magpsf < 19.0" "candidate.rb > 0.5" "candidate.rb > 0.9"
    "candidate.fid == 1" "has(candidate.sgscore1) && candidate.sgscore1 < 0.3" "cdsxmatch == 'Unknown'"
    "rf_snia_vs_nonia > 0.7" "size(prv_candidates) > 20" "candidate.ndethist <= 5")
  for i in $(seq 0 $(($2 - 1))); do
    printf '[[topic]]\nname = "bench_%s_%d"\npartitions = 2\n' "$1" "$i"
    printf '[[stream]]\nname = "s%d"\nsource = { format = "parquet", path = "%s"%s }\ntopic = "bench_%s_%d"\nschema_path = "schema.avsc"\n' "$i" "${SRC:-alerts}" "${SRC_EXTRA:-}" "$1" "$i"
    if [ "$2" -gt 1 ]; then printf 'filter = "%s"\n' "${filters[$i]}"; fi
    if [ -n "${DROP:-}" ]; then printf 'drop = ["cutoutScience", "cutoutTemplate", "cutoutDifference"]\n'; fi
  done
}

header > fink.toml
"$FINK" cluster start >/dev/null || exit 1
echo "generating $ALERTS alerts..."
"$FINK" simulate --out alerts --alerts "$ALERTS" --per-file 1000 --seed 1 >/dev/null || exit 1
du -sh alerts | awk '{print "source: " $1 " of Parquet"}'

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

# fink: prints "seconds rss_kb published bytes"
run_fink() { # $1 tag $2 streams
  # A group per run: each run starts from no progress.
  GROUP="b$1" config "$1" "$2" > fink.toml
  "$FINK" apply --auto-approve >/dev/null 2>&1 || { echo "apply failed" >&2; return 1; }
  rm -rf state
  # A stalled stream waits for the broker forever: give up after 15 minutes.
  /usr/bin/time -f "%e %M" -o time.txt timeout 900 "$FINK" run --until-idle --no-progress --output json > run.json 2>run.err || { tail -20 run.err >&2; return 1; }
  python3 -c "
import json; d=json.load(open('run.json')); s=d['streams']
print(open('time.txt').read().split()[0], open('time.txt').read().split()[1], sum(x['stats']['published'] for x in s), sum(x['stats']['bytes'] for x in s), sum(x['stats']['read'] for x in s), sum(x['stats'].get('source_bytes', 0) for x in s))"
}

# Untimed warm-up: a freshly started broker (cold JVM, empty page cache) is
# slower than the long-running service we publish to, and every figure
# below, baselines included, should meet the same warm broker.
run_fink warm 1 >/dev/null || exit 1
echo "warm-up run done"

if [ "${SOURCE:-}" = s3 ]; then
  # The local S3 server (moto, signatures checked), started if not running.
  if ! { [ -f "$REPO/.fink/stores/env" ] && . "$REPO/.fink/stores/env" && curl -s -o /dev/null "$FINK_TEST_S3_ENDPOINT"; }; then
    bash "$REPO/integration/stores.sh" start >/dev/null || exit 1
    . "$REPO/.fink/stores/env"
  fi
  export FINK_TEST_S3_ACCESS_KEY FINK_TEST_S3_SECRET_KEY
  bucket="bench-$$"
  echo "uploading the alerts to s3://$bucket/alerts ..."
  "$REPO/.fink/venv/bin/python" - "$FINK_TEST_S3_ENDPOINT" "$bucket" <<'PY' || exit 1
import os, sys, boto3
endpoint, bucket = sys.argv[1], sys.argv[2]
c = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                 aws_access_key_id=os.environ["FINK_TEST_S3_ACCESS_KEY"],
                 aws_secret_access_key=os.environ["FINK_TEST_S3_SECRET_KEY"])
c.create_bucket(Bucket=bucket)
for root, _, files in os.walk("alerts"):
    for f in files:
        p = os.path.join(root, f)
        c.upload_file(p, bucket, p)
PY
  s3="s3://$bucket/alerts"
  s3x=", endpoint = \"$FINK_TEST_S3_ENDPOINT\", allow_http = true, access_key = { env = \"FINK_TEST_S3_ACCESS_KEY\" }, secret_key = { env = \"FINK_TEST_S3_SECRET_KEY\" }"
  declare -a lt st_ ldt sdt
  for r in $(seq 1 "$RUNS"); do
    read -r t rss pub bytes read lb < <(run_fink "disk$r" 1) || exit 1
    lt+=("$t"); echo "run $r, local disk:           ${t}s, $pub alerts, $((lb / 1000000)) MB read from the source"
    read -r t rss pub bytes read sb < <(SRC="$s3" SRC_EXTRA="$s3x" run_fink "s3$r" 1) || exit 1
    st_+=("$t"); echo "run $r, S3:                   ${t}s, $pub alerts, $((sb / 1000000)) MB read from the source"
    read -r t rss pub bytes read ldb < <(DROP=1 run_fink "diskdrop$r" 1) || exit 1
    ldt+=("$t"); echo "run $r, local disk, no cutouts: ${t}s, $pub alerts, $((ldb / 1000000)) MB read from the source"
    read -r t rss pub bytes read sdb < <(DROP=1 SRC="$s3" SRC_EXTRA="$s3x" run_fink "s3drop$r" 1) || exit 1
    sdt+=("$t"); echo "run $r, S3, no cutouts:         ${t}s, $pub alerts, $((sdb / 1000000)) MB read from the source"
  done
  python3 - "$ALERTS" "$(printf '%s\n' "${lt[@]}" | median)" "$(printf '%s\n' "${st_[@]}" | median)" \
    "$(printf '%s\n' "${ldt[@]}" | median)" "$(printf '%s\n' "${sdt[@]}" | median)" "$lb" "$sb" "$ldb" "$sdb" <<'PY'
import sys
n = int(sys.argv[1]); lt, st, ldt, sdt = map(float, sys.argv[2:6]); lb, sb, ldb, sdb = map(int, sys.argv[6:10])
print(f"\nmedian of runs, {n} alerts, 1 stream, exactly-once:")
print(f"  local disk           {n/lt:8.0f} alerts/s  {lb/1e6:8.1f} MB read")
print(f"  S3 (moto, local)     {n/st:8.0f} alerts/s  {sb/1e6:8.1f} MB read")
print(f"  local, no cutouts    {n/ldt:8.0f} alerts/s  {ldb/1e6:8.1f} MB read")
print(f"  S3, no cutouts       {n/sdt:8.0f} alerts/s  {sdb/1e6:8.1f} MB read")
print(f"S3 / local disk = {lt/st:.2f} (goal >= 0.70); without cutouts {ldt/sdt:.2f}; "
      f"bytes read with / without cutouts: local {lb/max(ldb,1):.1f}x, S3 {sb/max(sdb,1):.1f}x (goal >= 3)")
PY
  exit 0
fi

if [ "${SOURCE:-}" = files ]; then
  "$FINK" simulate --out small --alerts "$ALERTS" --per-file $((ALERTS / 5000 > 0 ? ALERTS / 5000 : 1)) --seed 1 >/dev/null || exit 1
  declare -a ft fst
  for r in $(seq 1 "$RUNS"); do
    read -r t _ pub _ < <(run_fink "few$r" 1) || exit 1
    ft+=("$t"); echo "run $r, 20 files:    ${t}s, published $pub alerts"
    read -r t _ pub _ < <(SRC=small run_fink "many$r" 1) || exit 1
    fst+=("$t"); echo "run $r, 5,000 files: ${t}s, published $pub alerts"
  done
  a=$(printf '%s\n' "${ft[@]}" | median); b=$(printf '%s\n' "${fst[@]}" | median)
  python3 -c "import sys; a, b = map(float, sys.argv[1:]); print(f'median: 5,000 files {b:.1f} s against {a:.1f} s in 20 files = {b/a:.2f}x (goal <= 1.5)')" "$a" "$b"
  exit 0
fi

if [ "${SOURCE:-}" = python ]; then
  # Python filters: the same cut as CEL and as fink-filters' function; the
  # cost of the worker round trip (a filter that keeps everything) against
  # decoding; the complete ZTF catalogue (CEL and Python topics) with the
  # workers' memory; and Fink's Spark distribution running fink-filters'
  # pandas UDFs for the same topics on the same alerts (local[2]).
  PY="$REPO/.fink/venv/bin/python"
  # Peak RSS of fink and its Python workers together, sampled every 0.2 s.
  # (The pid is `timeout`'s: fink is its child, the workers fink's.)
  # Also writes the peak of the tree's PSS (shared pages counted once: the
  # workers forked from one template share its imports) to pss_kb.txt.
  tree_rss_kb() { # $1 pid
    local max=0 maxp=0 cur pids p pss
    while kill -0 "$1" 2>/dev/null; do
      read -r cur pids < <(ps -e -o pid=,ppid=,rss= 2>/dev/null | awk -v root="$1" '
        { parent[$1] = $2; rss[$1] = $3 }
        END { l = ""; for (p in rss) { q = p; while (q != "" && q != 0 && q != root) q = parent[q]; if (q == root) { s += rss[p]; l = l " " p } } print s + 0, l }')
      [ "$cur" -gt "$max" ] && max=$cur
      pss=0
      for p in $pids; do
        pss=$((pss + $(awk '/^Pss:/ {print $2; exit}' "/proc/$p/smaps_rollup" 2>/dev/null || echo 0)))
      done
      [ "$pss" -gt "$maxp" ] && maxp=$pss
      sleep 0.2
    done
    echo "$maxp" > pss_kb.txt
    echo "$max"
  }
  # fink.toml written: prints "seconds tree_rss_kb published streams"
  run_written() {
    "$FINK" apply --auto-approve >/dev/null 2>&1 || { echo "apply failed" >&2; return 1; }
    rm -rf state
    local t0 t1 pid rss
    t0=$(date +%s.%N)
    timeout 900 "$FINK" run --until-idle --no-progress --output json > run.json 2>run.err &
    pid=$!
    rss=$(tree_rss_kb "$pid")
    wait "$pid" || { tail -20 run.err >&2; return 1; }
    t1=$(date +%s.%N)
    python3 -c "
import json, sys; s = json.load(open('run.json'))['streams']
print(float(sys.argv[2]) - float(sys.argv[1]), sys.argv[3], sum(x['stats']['published'] for x in s), len(s))" "$t0" "$t1" "$rss"
  }
  one_filter() { # $1 tag, $2 the [filter.f] body
    GROUP="b$1" header
    printf '[[topic]]\nname = "bench_%s"\npartitions = 2\n' "$1"
    printf '%s\n' "$consts"
    printf '[filter.f]\n%s\n' "$2"
    printf '[[stream]]\nname = "s"\nsource = { format = "parquet", path = "alerts" }\ntopic = "bench_%s"\nfilters = ["f"]\n' "$1"
  }
  sn_cel=$(python3 -c "
import tomllib; f = tomllib.load(open('$REPO/conf/fink/ztf.toml', 'rb'))['filter']['sn_candidates']
print('expr = \"' + f['expr'].replace('\"', '\\\\\"') + '\"\non_null = \"' + f['on_null'] + '\"')")
  # The catalogue's constants (EG_HOST, ...), which the CEL form uses.
  consts=$(python3 -c "
import json, tomllib; c = tomllib.load(open('$REPO/conf/fink/ztf.toml', 'rb'))['const']
print('[const]'); [print(k, '=', json.dumps(v)) for k, v in c.items()]")
  sn_py='python = "fink_filters.ztf.livestream.filter_sn_candidates.filter:sn_candidates"'
  printf 'def keep(candid):\n    return candid == candid\n' > keep_all.py
  declare -a cel_t py_t true_t none_t false_t cat_t cat_rss spark_t
  for r in $(seq 1 "$RUNS"); do
    one_filter "cel$r" "$sn_cel" > fink.toml
    read -r t rss pub _ < <(run_written) || exit 1
    cel_t+=("$t"); echo "run $r, sn_candidates in CEL:            ${t}s, published $pub"
    one_filter "py$r" "$sn_py" > fink.toml
    read -r t rss pub _ < <(run_written) || exit 1
    py_t+=("$t"); echo "run $r, sn_candidates, fink-filters' Python: ${t}s, published $pub, peak RSS with workers $((rss / 1024)) MB"
    one_filter "true$r" 'python = "keep_all.py:keep"' > fink.toml
    read -r t rss pub _ < <(run_written) || exit 1
    true_t+=("$t"); echo "run $r, a Python filter keeping all:       ${t}s, published $pub"
    { GROUP="bn$r" header; printf '[[topic]]\nname = "bench_none%s"\npartitions = 2\n[[stream]]\nname = "s"\nsource = { format = "parquet", path = "alerts" }\ntopic = "bench_none%s"\n' "$r" "$r"; } > fink.toml
    read -r t rss pub _ < <(run_written) || exit 1
    none_t+=("$t"); echo "run $r, no filter:                         ${t}s, published $pub"
    one_filter "false$r" 'expr = "false"' > fink.toml
    read -r t rss pub _ < <(run_written) || exit 1
    false_t+=("$t"); echo "run $r, CEL false (read and decode only):  ${t}s"
    mkdir -p .fink/demo && ln -sfn "$PWD/alerts" .fink/demo/science
    { echo "include = [\"$REPO/conf/fink/ztf.toml\"]"; GROUP="bc$r" header | sed 's/^scope = .*/scope = ["bench_*", "fink_*"]/'; } > fink.toml
    read -r t rss pub n < <(run_written) || exit 1
    cat_t+=("$t"); cat_rss+=("$rss")
    echo "run $r, ZTF catalogue ($n streams):       ${t}s, published $pub, peak RSS with workers $((rss / 1024)) MB (PSS $(( $(cat pss_kb.txt) / 1024 )) MB)"
    topics=$(python3 -c "
import tomllib; f = tomllib.load(open('$REPO/conf/fink/ztf.toml', 'rb'))['filter']
print(' '.join(k for k in f if k != 'simbad_candidates'))")
    out=$(JAVA_TOOL_OPTIONS= "$PY" "$REPO/integration/python/spark_catalogue.py" alerts $topics 2>spark.err | tail -1)
    st=$(echo "$out" | python3 -c "import json, sys; print(json.load(sys.stdin)['seconds'])") || { tail -5 spark.err; exit 1; }
    lost=$(echo "$out" | python3 -c "import json, sys; f = json.load(sys.stdin)['failed']; print(', '.join(f'{k} ({v})' for k, v in f.items()) or 'none')")
    spark_t+=("$st"); echo "run $r, Spark local[2], fink-filters' UDFs for the same $(echo $topics | wc -w) topics: ${st}s (startup excluded); topics lost to a raising UDF: $lost"
  done
  m() { printf '%s\n' "$@" | median; }
  python3 - "$ALERTS" "$(m "${cel_t[@]}")" "$(m "${py_t[@]}")" "$(m "${true_t[@]}")" "$(m "${none_t[@]}")" \
    "$(m "${false_t[@]}")" "$(m "${cat_t[@]}")" "$(printf '%s\n' "${cat_rss[@]}" | sort -n | tail -1)" "$(m "${spark_t[@]}")" <<'PYX'
import sys
n = int(sys.argv[1]); cel, py, true, none, false, cat, crss, spark = map(float, sys.argv[2:10])
batches = n / 256
print(f"\nmedian of runs, {n} alerts, exactly-once:")
print(f"  sn_candidates, CEL               {n/cel:8.0f} alerts/s")
print(f"  sn_candidates, Python (workers)  {n/py:8.0f} alerts/s   Python/CEL = {cel/py:.2f} (goal >= 0.5)")
print(f"  ZTF catalogue, CEL + Python      {n/cat:8.0f} source alerts/s   peak RSS with workers {crss/1024:.0f} MB")
print(f"  Spark local[2], the same filters {n/spark:8.0f} source alerts/s (fink-filters' pandas UDFs, counting only)")
print(f"catalogue / Spark = {spark/cat:.1f}x (goal >= 3)")
print(f"worker round trip per batch of 256: {(true-none)/batches*1000:.1f} ms (a filter keeping all, against no filter); "
      f"reading and decoding a batch: {false/batches*1000:.1f} ms")
PYX
  exit 0
fi

declare -a one_t one_rss ten_t ten_rss
for r in $(seq 1 "$RUNS"); do
  read -r t rss pub bytes read _ < <(run_fink "one$r" 1) || exit 1
  one_t+=("$t"); one_rss+=("$rss"); one_bytes=$bytes; one_pub=$pub
  echo "run $r, 1 stream:   ${t}s, published $pub alerts ($((bytes / 1000000)) MB), peak RSS $((rss / 1024)) MB"
  read -r t rss pub bytes read _ < <(run_fink "ten$r" 10) || exit 1
  ten_t+=("$t"); ten_rss+=("$rss")
  echo "run $r, 10 streams: ${t}s, published $pub alerts of $read read, peak RSS $((rss / 1024)) MB"
done
record_size=$((one_bytes / one_pub))

# Exactly-once against at-least-once, and many small files against few.
echo "splitting the same alerts into 5,000 files..."
"$FINK" simulate --out small --alerts "$ALERTS" --per-file $((ALERTS / 5000 > 0 ? ALERTS / 5000 : 1)) --seed 1 >/dev/null || exit 1
declare -a alo_t small_t
for r in $(seq 1 "$RUNS"); do
  read -r t rss pub bytes read _ < <(DELIVERY=at-least-once run_fink "alo$r" 1) || exit 1
  alo_t+=("$t")
  echo "run $r, 1 stream at-least-once: ${t}s, published $pub alerts"
  read -r t rss pub bytes read _ < <(SRC=small run_fink "small$r" 1) || exit 1
  small_t+=("$t")
  echo "run $r, 1 stream, 5,000 files: ${t}s, published $pub alerts"
done

# Fink's ZTF catalogue: its 13 streams (conf/fink/ztf.toml) on the same
# source, as the default fink.toml runs them.
run_catalogue() { # $1 tag
  mkdir -p .fink/demo && ln -sfn "$PWD/alerts" .fink/demo/science
  # include comes before the first table
  { echo "include = [\"$REPO/conf/fink/ztf.toml\"]"; GROUP="b$1" header | sed 's/^scope = .*/scope = ["bench_*", "fink_*"]/'; } > fink.toml
  "$FINK" apply --auto-approve >/dev/null 2>&1 || { echo "apply failed" >&2; return 1; }
  /usr/bin/time -f "%e %M" -o time.txt timeout 900 "$FINK" run --until-idle --no-progress --output json > run.json 2>run.err || { tail -20 run.err >&2; return 1; }
  python3 -c "
import json; d=json.load(open('run.json')); s=d['streams']
print(open('time.txt').read().split()[0], open('time.txt').read().split()[1], sum(x['stats']['published'] for x in s), len(s))"
}
declare -a cat_t cat_rss
for r in $(seq 1 "$RUNS"); do
  read -r t rss pub n < <(run_catalogue "cat$r") || exit 1
  cat_t+=("$t"); cat_rss+=("$rss")
  echo "run $r, ZTF catalogue ($n streams): ${t}s, published $pub alerts, peak RSS $((rss / 1024)) MB"
done

# Baseline 0: the transport ceiling, the values fink published in the last
# one-stream run sent again from memory with fink's producer settings
# (integration/python/ceiling.py), in its own process.
printf '[[topic]]\nname = "bench_ceiling"\npartitions = 2\n' > ceiling.toml
{ header; cat ceiling.toml; } > fink.toml
"$FINK" apply --auto-approve >/dev/null 2>&1
declare -a ceil_t
for r in $(seq 1 "$RUNS"); do
  read -r t n b < <("$REPO/.fink/venv/bin/python" "$REPO/integration/python/ceiling.py" 127.0.0.1:49092 \
    secrets/admin.pw "bench_one${RUNS}_0" bench_ceiling 2) || { echo "ceiling baseline failed"; exit 1; }
  ceil_t+=("$t")
  echo "run $r, transport ceiling (librdkafka from memory): ${t}s for $n records ($((b / 1000000)) MB)"
done

# Baseline 0b: Fink's own Spark distribution, write action alone (no
# filter): fink_utils' get_kafka_df (to_avro) and Spark's Kafka sink,
# pyspark 3.5.7 local[2] (integration/python/spark_write.py), startup
# excluded; the topic's record count is checked.
JARS=$(bash "$REPO/conf/install_spark_kafka.sh" | tail -1) || { echo "spark jars failed"; exit 1; }
declare -a spark_t
for r in $(seq 1 "$RUNS"); do
  printf '[[topic]]\nname = "bench_spark%s"\npartitions = 2\n' "$r" > spark.toml
  { header; cat spark.toml; } > fink.toml
  "$FINK" apply --auto-approve >/dev/null 2>&1
  out=$(JAVA_TOOL_OPTIONS= "$REPO/.fink/venv/bin/python" "$REPO/integration/python/spark_write.py" "$JARS" alerts \
    127.0.0.1:49092 secrets/admin.pw "bench_spark$r" 2>spark.err | tail -1)
  t=$(echo "$out" | python3 -c "import json, sys; print(json.load(sys.stdin)['seconds'])") || { tail -5 spark.err; exit 1; }
  got=$("$REPO/.fink/venv/bin/python" -c "
import sys
from confluent_kafka import Consumer
c = Consumer({'bootstrap.servers': '127.0.0.1:49092', 'security.protocol': 'SASL_PLAINTEXT', 'sasl.mechanisms': 'SCRAM-SHA-512',
              'sasl.username': 'admin', 'sasl.password': open('secrets/admin.pw').read().strip(), 'group.id': 'count'})
from confluent_kafka import TopicPartition
print(sum(c.get_watermark_offsets(TopicPartition(sys.argv[1], p), timeout=30)[1] for p in (0, 1)))" "bench_spark$r")
  [ "$got" -ge "$ALERTS" ] || { echo "Spark wrote $got records of $ALERTS"; exit 1; }
  spark_t+=("$t")
  echo "run $r, Spark local[2], Fink's distribution write action: ${t}s for $got records (startup excluded)"
done

# Baseline 1: the broker's ceiling with Kafka's producer performance tool.
KAFKA_HOME=$(bash "$OLDPWD/conf/install_kafka.sh" 2>/dev/null | tail -1)
pw=$(cat secrets/admin.pw)
cat > perf.properties <<PROPS
bootstrap.servers=127.0.0.1:49092
acks=all
compression.type=zstd
compression.zstd.level=1
enable.idempotence=true
linger.ms=20
security.protocol=SASL_PLAINTEXT
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$pw";
PROPS
printf '[[topic]]\nname = "bench_perf"\npartitions = 2\n' > perf.toml
{ header; cat perf.toml; } > fink.toml
"$FINK" apply --auto-approve >/dev/null 2>&1
declare -a perf_rate
for r in $(seq 1 "$RUNS"); do
  out=$(java -Xmx1g -cp "$KAFKA_HOME/libs/*" -Dlog4j2.level=warn org.apache.kafka.tools.ProducerPerformance \
    --topic bench_perf --num-records "$ALERTS" --record-size "$record_size" --throughput -1 \
    --producer.config perf.properties 2>/dev/null | tail -1)
  rate=$(echo "$out" | sed -n 's/.*records sent, \([0-9.]*\) records\/sec.*/\1/p')
  perf_rate+=("$rate")
  echo "run $r, Kafka ProducerPerformance: $rate records/s (record size $record_size bytes)"
done

# Baseline 2: the same pipeline in Python.
if [ ! -x venv/bin/python ]; then
  python3 -m venv venv >/dev/null && venv/bin/pip install -q pyarrow fastavro confluent-kafka >/dev/null 2>&1
fi
cat > pipeline.py <<'PY'
import glob, io, json, sys, time, resource
import pyarrow.parquet as pq, fastavro
from confluent_kafka import Producer
topic, pw, schema_path = sys.argv[1], sys.argv[2], sys.argv[3]
schema_json = open(schema_path).read()
parsed = fastavro.parse_schema(json.loads(schema_json))
key = json.dumps(json.loads(schema_json)).encode()
p = Producer({"bootstrap.servers": "127.0.0.1:49092", "security.protocol": "SASL_PLAINTEXT",
              "sasl.mechanisms": "SCRAM-SHA-512", "sasl.username": "admin", "sasl.password": pw,
              "acks": "all", "enable.idempotence": True, "compression.type": "zstd", "compression.level": 1,
              "linger.ms": 20})
t0 = time.time(); n = 0
for f in sorted(glob.glob("alerts/*/*.parquet")):
    for batch in pq.ParquetFile(f).iter_batches(batch_size=256):
        for row in batch.to_pylist():
            buf = io.BytesIO(); fastavro.schemaless_writer(buf, parsed, row)
            while True:
                try:
                    p.produce(topic, key=key, value=buf.getvalue()); break
                except BufferError:
                    p.poll(0.01)
            p.poll(0); n += 1
p.flush()
print(time.time() - t0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, n)
PY
printf '[[topic]]\nname = "bench_py"\npartitions = 2\n' > py.toml
{ header; cat py.toml; } > fink.toml
"$FINK" apply --auto-approve >/dev/null 2>&1
declare -a py_t
for r in $(seq 1 "$RUNS"); do
  read -r t rss n < <(venv/bin/python pipeline.py bench_py "$pw" schema.avsc) || { echo "python baseline failed"; break; }
  py_t+=("$t")
  echo "run $r, Python pipeline: ${t}s for $n alerts, peak RSS $((rss / 1024)) MB"
done

ot=$(printf '%s\n' "${one_t[@]}" | median); tt=$(printf '%s\n' "${ten_t[@]}" | median)
orss=$(printf '%s\n' "${one_rss[@]}" | sort -n | tail -1); trss=$(printf '%s\n' "${ten_rss[@]}" | sort -n | tail -1)
pr=$(printf '%s\n' "${perf_rate[@]}" | median); pyt=$(printf '%s\n' "${py_t[@]:-0}" | median)
at=$(printf '%s\n' "${alo_t[@]}" | median); st=$(printf '%s\n' "${small_t[@]}" | median)
ct=$(printf '%s\n' "${cat_t[@]}" | median); crss=$(printf '%s\n' "${cat_rss[@]}" | sort -n | tail -1)
cet=$(printf '%s\n' "${ceil_t[@]}" | median); spt=$(printf '%s\n' "${spark_t[@]}" | median)
python3 - "$ALERTS" "$ot" "$tt" "$orss" "$trss" "$pr" "$pyt" "$record_size" "$at" "$st" "$ct" "$crss" "$cet" "$spt" <<'PY'
import sys
n, ot, tt, orss, trss, pr, pyt, size = int(sys.argv[1]), *map(float, sys.argv[2:8]), int(sys.argv[8])
at, st, ct, crss = float(sys.argv[9]), float(sys.argv[10]), float(sys.argv[11]), float(sys.argv[12])
cet, spt = float(sys.argv[13]), float(sys.argv[14])
one = n / ot; ten = n / tt; py = n / pyt if pyt else float("nan")
mb = lambda r: r * size / 1e6
print(f"\nmedian of runs, {n} alerts of ~{size // 1000} KB:")
print(f"  fink, 1 stream       {one:8.0f} alerts/s {mb(one):7.1f} MB/s  peak RSS {orss/1024:5.0f} MB")
print(f"  fink, 10 streams     {ten:8.0f} alerts/s {mb(ten):7.1f} MB/s  peak RSS {trss/1024:5.0f} MB  (source alerts read by every stream)")
print(f"  transport ceiling    {n/cet:8.0f} records/s {mb(n/cet):6.1f} MB/s  (fink's values from memory, fink's producer settings)")
print(f"  Spark, Fink's write {n/spt:8.0f} alerts/s {mb(n/spt):7.1f} MB/s  (local[2], to_avro + Kafka sink, startup excluded)")
print(f"  Kafka ProducerPerf   {pr:8.0f} records/s {mb(pr):6.1f} MB/s")
print(f"  Python pipeline      {py:8.0f} alerts/s {mb(py):7.1f} MB/s")
print(f"  fink, ZTF catalogue  {n/ct:8.0f} alerts/s   peak RSS {crss/1024:5.0f} MB  (13 catalogue streams, source alerts/s)")
print(f"  fink, at-least-once  {n/at:8.0f} alerts/s   (1 stream; the figures above are exactly-once)")
print(f"  fink, 5,000 files    {st:8.1f} s   against {ot:.1f} s in 20 files")
print(f"ZTF catalogue: {n/ct:.0f} source alerts/s against {ten:.0f} for 10 streams (goal >= 1.0x: {n/ct/ten:.2f}x), "
      f"RSS < 300 MB: {'met' if crss/1024 < 300 else 'MISSED'}")
print(f"exactly-once / at-least-once throughput = {at/ot:.2f} (goal >= 0.90); 5,000 files / 20 files time = {st/ot:.2f}x (goal <= 1.5)")
print(f"fink / transport ceiling = {cet/ot:.2f} (goal >= 0.9: {'met' if cet/ot >= 0.9 else 'MISSED'}); "
      f"fink / Spark's write action = {spt/ot:.1f}x (goal >= 3.5: {'met' if spt/ot >= 3.5 else 'MISSED'}); "
      f"transport ceiling / Spark = {spt/cet:.1f}x")
print(f"ratios: fink/broker ceiling = {one/pr:.2f} (goal >= 0.8); fink/Python = {one/py:.1f}x (goal >= 5); "
      f"1 stream >= 2000 alerts/s: {'met' if one >= 2000 else 'MISSED'}; RSS < 300 MB with 10 streams: {'met' if trss/1024 < 300 else 'MISSED'}")
PY
