#!/usr/bin/env bash
# kill -9 of `fink run` again and again mid-backlog, then a restart; counts
# come from a read_committed consumer and are compared with the source.
#   KILLS=20 ALERTS=50000 integration/chaos.sh
# Defaults: 20 kills over 50,000 alerts, a share of which lands before each
# restart; each kill comes after a random count of the run's alerts. 8-row
# batches and a commit every 100 ms cut many transactions (CI runs the same
# test with 5 kills over 4,000). Prints how many kills landed mid-backlog.
# Uses the test cluster (profiles/test.toml, port 29092), started here if it
# is not up.
set -euo pipefail
cd "$(dirname "$0")/.."
KILLS=${KILLS:-20}
ALERTS=${ALERTS:-50000}
# What a fresh machine lacks (Java, python3-venv), as .ci/run installs it.
bash conf/install_deps.sh >/dev/null || exit 1
cargo build -q --bin fink
if ! target/debug/fink --profile test cluster status >/dev/null 2>&1; then
  target/debug/fink --profile test cluster start
  started=1
fi
trap '[ "${started:-}" = 1 ] && target/debug/fink --profile test cluster stop >/dev/null 2>&1 || true' EXIT
NO_COLOR=1 FINK_TEST_BOOTSTRAP=127.0.0.1:29092 FINK_CHAOS_KILLS=$KILLS FINK_CHAOS_ALERTS=$ALERTS \
  FINK_CHAOS_COMMIT_MS=${COMMIT_MS:-100} FINK_CHAOS_BATCH=${BATCH:-8} \
  cargo test -q --test exactly_once kill_9_again_and_again -- --nocapture 2>&1 | grep -E "kill|messages|test result|panicked"
