#!/usr/bin/env bash
# The project's Python environment, .fink/venv: created if missing, then
# given each package whose module does not import yet. Arguments are
# MODULE=PIP_SPEC pairs. Shared by .ci/run and the scripts in integration/.
#   bash conf/install_python.sh fink_client=fink-client moto=moto[server]
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .fink/venv/bin/python ] || python3 -m venv .fink/venv
missing=()
for pair in "$@"; do
  mod=${pair%%=*}
  spec=${pair#*=}
  .fink/venv/bin/python -c "import $mod" 2>/dev/null || missing+=("$spec")
done
if [ ${#missing[@]} -gt 0 ]; then
  .fink/venv/bin/pip install -q --disable-pip-version-check "${missing[@]}"
fi
