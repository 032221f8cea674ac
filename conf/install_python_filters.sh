#!/usr/bin/env bash
# What Python filters need in .fink/venv (the `[python] interpreter` of
# fink.toml and of the tests): pyarrow and pandas for fink's worker, and
# fink-filters 7.45 with what its livestream filters import, pinned.
# fink-filters, fink-utils and fink-science declare no usable dependency
# lists, so they are installed without theirs and their imports are named
# here. Shared by .ci/run, integration/up.sh and the benchmarks.
set -euo pipefail
cd "$(dirname "$0")/.."
bash conf/install_python.sh \
  pyarrow=pyarrow==26.0.1 pandas=pandas==3.1.1 astropy=astropy==8.0.2 scipy=scipy==1.17.1 \
  pyspark=pyspark==3.5.7 requests=requests==2.34.2 keyring=keyring==25.7.0 pyvo=pyvo==1.10.0 \
  bs4=beautifulsoup4==4.15.0 html5lib=html5lib==1.1 line_profiler=line_profiler==5.1.0
# Without their dependency lists (they would pull Spark's and TensorFlow's).
if ! .fink/venv/bin/python -c "import fink_filters, fink_utils, fink_science, astroquery" 2>/dev/null; then
  .fink/venv/bin/pip install -q --disable-pip-version-check --no-deps \
    fink-filters==7.45 fink-utils==0.79.0 fink-science==7.4.0 astroquery==0.4.11
fi
