#!/usr/bin/env bash
# Bring the system up from a fresh clone: build fink, start the local Kafka
# cluster (installing its jars once), and apply fink.toml to it.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release
FINK=target/release/fink
"$FINK" cluster start
"$FINK" apply --auto-approve
"$FINK" topics
