#!/usr/bin/env bash
# Bring the system up from a fresh clone: build fink, start the local Kafka
# cluster (installing its jars once), apply fink.toml, generate demo alerts
# (once) and start the distribution streams in the background.
set -euo pipefail
cd "$(dirname "$0")/.."
# What a fresh Debian machine lacks (the same step as .ci/run).
bash conf/install_deps.sh
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release
FINK=target/release/fink
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
sleep 3
"$FINK" status
"$FINK" consume fink_bright_ztf --max 5
