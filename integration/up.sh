#!/usr/bin/env bash
# Bring the system up from a fresh clone: build fink, start the local Kafka
# cluster (installing its jars once), apply fink.toml, generate demo alerts
# (once) and start the distribution streams in the background.
set -euo pipefail
cd "$(dirname "$0")/.."
# What a fresh Debian machine lacks (the same step as .ci/run).
bash conf/install_deps.sh
# The Python topics' interpreter (fink.toml's [python]): fink-filters and
# what it imports, into .fink/venv.
bash conf/install_python_filters.sh
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
# FINK_BUILD=debug uses the debug build (CI, which has it already).
if [ "${FINK_BUILD:-release}" = debug ]; then
  cargo build
  FINK=target/debug/fink
else
  cargo build --release
  FINK=target/release/fink
fi
"$FINK" cluster start
"$FINK" apply --auto-approve
if [ ! -d .fink/demo/science ]; then
  "$FINK" simulate --out .fink/demo/science --alerts 2000 --per-file 500 --nights 2 --seed 42
fi
if [ -f .fink/run.pid ] && kill -0 "$(cat .fink/run.pid)" 2>/dev/null; then
  echo "fink run is already running (pid $(cat .fink/run.pid))"
else
  nohup "$FINK" run --no-progress > .fink/run.log 2>&1 &
  echo $! > .fink/run.pid
  echo "fink run started (pid $!, log .fink/run.log); stop it with: kill \$(cat .fink/run.pid)"
fi
# The demo streams read the generated alerts: wait (up to 2 minutes) until
# every stream is idle, its alerts committed, before showing them.
idle() {
  "$FINK" status --output json 2>/dev/null | python3 -c '
import json, sys
s = json.load(sys.stdin)
sys.exit(0 if s["streams"] and all(x["state"]["state"] == "idle" for x in s["streams"]) else 1)'
}
for _ in $(seq 1 240); do
  idle && break
  sleep 0.5
done
idle || echo "the streams are not idle yet after 2 minutes; see .fink/run.log"
"$FINK" status
"$FINK" consume fink_bright_ztf --max 5
