#!/usr/bin/env bash
# mdBook and its mermaid preprocessor (crates.io), for the handbook in
# docs/: built from source once into ~/.cargo/bin, then reused.
# Pinned: mdbook 0.5.4 (without its serve/watch features: CI only builds),
# mdbook-mermaid 0.17.1 (resolved against the newest mdbook 0.5
# preprocessor API, so it does not warn about a version mismatch).
set -euo pipefail
MDBOOK_VERSION=0.5.4
MERMAID_VERSION=0.17.1
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
have() { command -v "$1" >/dev/null 2>&1 && "$1" --version 2>/dev/null | grep -q "$2"; }
if ! have mdbook "v$MDBOOK_VERSION"; then
  echo "install_mdbook: building mdbook $MDBOOK_VERSION (crates.io)..."
  cargo install --quiet --locked mdbook --version "$MDBOOK_VERSION" --no-default-features --features search
fi
if ! have mdbook-mermaid "$MERMAID_VERSION"; then
  echo "install_mdbook: building mdbook-mermaid $MERMAID_VERSION (crates.io)..."
  cargo install --quiet mdbook-mermaid --version "$MERMAID_VERSION"
fi
mdbook --version
mdbook-mermaid --version
