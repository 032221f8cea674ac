#!/usr/bin/env bash
# Benchmark `fink apply` from an empty cluster and a no-change `fink plan`
# on a generated config: 1,000 topics, 200 users, 5,000 ACL bindings and
# 1,000 client quotas.
# Runs its own one-node cluster (ports 39092/39192) so nothing else is touched.
#   RUNS=3 integration/bench_plan.sh
set -uo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
# What a fresh machine lacks (Java, python3-venv), as .ci/run installs it.
bash conf/install_deps.sh >/dev/null || exit 1
cargo build --release -q
FINK=$PWD/target/release/fink
work=$(mktemp -d)
trap '"$FINK" --config "$work/fink.toml" cluster stop --grace 10 >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

header() {
  cat <<TOML
scope = ["b_*"]
prune = true
[cluster]
bootstrap = ["127.0.0.1:39092"]
timeout_secs = 60
[cluster.admin]
user = "admin"
password = { file = "secrets/admin.pw", generate = true }
[local]
port = 39092
controller_port = 39192
data_dir = "data"
heap = "1g"
TOML
}

# The full desired state: 1000 topics, 200 users x 25 ACL bindings. Names
# carry the run number: Kafka deletes topics asynchronously, so a run never
# recreates names the previous run's cleanup may still be deleting.
full() {
  local r=$1
  header
  for t in $(seq 1 1000); do printf '[[topic]]\nname = "b_r'"$r"'_topic_%04d"\n[topic.config]\n"retention.ms" = %d\n' "$t" $((3600000 + t)); done
  for u in $(seq 1 200); do printf '[[user]]\nname = "b_user_%03d"\npassword = { file = "secrets/b_user_%03d", generate = true }\n' "$u" "$u"; done
  for u in $(seq 1 200); do
    for k in $(seq 0 7); do
      t=$(( (u * 8 + k) % 1000 + 1 ))
      printf '[[acl]]\nuser = "b_user_%03d"\nrole = "consumer"\ntopic = "b_r'"$r"'_topic_%04d"\ngroup = "b_user_%03d_g%d"\n' "$u" "$t" "$u" "$k"
    done
    printf '[[acl]]\nuser = "b_user_%03d"\nresource = "transactional_id"\nname = "b_user_%03d"\noperations = ["Describe"]\n' "$u" "$u"
    for k in $(seq 1 5); do
      printf '[[quota]]\nuser = "b_user_%03d"\nclient_id = "b_app_%d"\nconsumer_byte_rate = %d\n' "$u" "$k" $((1048576 * k + u))
    done
  done
}
full 1 > "$work/full.toml"
header > "$work/empty.toml"
cp "$work/empty.toml" "$work/fink.toml"

"$FINK" --config "$work/fink.toml" cluster start >/dev/null
acls=$("$FINK" --config "$work/full.toml" validate | sed -n 's/.*, \([0-9]*\) ACL entries.*/\1/p')
echo "config: 1000 topics, 200 users, $acls [[acl]] entries ($(grep -c '^\[\[acl' "$work/full.toml") declared, 5000 bindings after expansion), $(grep -c '^\[\[quota' "$work/full.toml") quotas"

now() { date +%s.%N; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

apply_t=(); plan_t=(); base_t=()
for r in $(seq 1 "$RUNS"); do
  full "$r" > "$work/fink.toml"
  s=$(now); "$FINK" --config "$work/fink.toml" apply --auto-approve >"$work/apply.out" 2>&1; rc=$?; e=$(now)
  [ $rc -eq 0 ] || { echo "apply failed:"; tail -20 "$work/apply.out"; exit 1; }
  apply_t+=("$(echo "$e - $s" | bc)")
  s=$(now); "$FINK" --config "$work/fink.toml" plan --detailed-exitcode >"$work/plan.out" 2>&1; rc=$?; e=$(now)
  [ $rc -eq 0 ] || { echo "no-change plan found changes or failed (exit $rc):"; tail -20 "$work/plan.out"; exit 1; }
  plan_t+=("$(echo "$e - $s" | bc)")
  # Baseline in the same run: one plain read of topics and their configs.
  s=$(now); "$FINK" --config "$work/fink.toml" topics >/dev/null; e=$(now)
  base_t+=("$(echo "$e - $s" | bc)")
  # Back to empty for the next run (prune within scope b_*).
  cp "$work/empty.toml" "$work/fink.toml"
  "$FINK" --config "$work/fink.toml" apply --auto-approve >/dev/null 2>&1 || { echo "cleanup failed"; exit 1; }
  echo "run $r: apply ${apply_t[-1]}s, no-change plan ${plan_t[-1]}s, topics read ${base_t[-1]}s"
done
am=$(printf '%s\n' "${apply_t[@]}" | median)
pm=$(printf '%s\n' "${plan_t[@]}" | median)
bm=$(printf '%s\n' "${base_t[@]}" | median)
echo
echo "median over $RUNS runs:"
printf '  apply from empty     %6.2f s   (goal < 60 s: %s)\n' "$am" "$(echo "$am < 60" | bc | sed 's/1/met/;s/0/MISSED/')"
printf '  no-change plan       %6.2f s   (goal < 2 s: %s)\n' "$pm" "$(echo "$pm < 2" | bc | sed 's/1/met/;s/0/MISSED/')"
printf '  baseline: topics     %6.2f s   (plan / baseline = %.1fx)\n' "$bm" "$(echo "$pm / $bm" | bc -l)"
