"""A level-two filter, as Fink's `userfilters/leveltwo.py` is written.

fink runs it in its Python workers (`[python]` in fink.toml):

    [filter.leveltwo]
    python = "userfilters/leveltwo.py:filter_leveltwo"

    [[stream]]
    name = "my_stream"
    filters = ["good_quality", "leveltwo"]   # CEL first, then this

How it is called:
- one call per `[python] batch_rows` rows of a file (512; the rows the
  stream's CEL filters kept);
- each argument is a pandas Series of one column, found by its name as
  Fink's Spark runner finds it: the column whose path ends with the name
  (`rb` is `candidate.rb`, `cdsxmatch` the top-level column). To name the
  columns yourself, give `args = ["candidate.rb", ...]` in fink.toml;
- `c<field>c` is the alert's history of `<field>` followed by its current
  value (`cmagpsfc`: `prv_candidates.magpsf` then `candidate.magpsf`), one
  numpy array per alert, as Fink's distribution builds it;
- it returns one boolean per alert (a pandas Series or a numpy array): True
  publishes the alert.

An exception quarantines the batch's file (its name and the traceback are
logged and in the stream's quarantine log); the other streams go on. The
module is imported once per worker: load catalogues at module level.

Fink's own filters work unchanged (`python =
"fink_filters.ztf.livestream.filter_sn_candidates.filter:sn_candidates"`):
a Spark `pandas_udf` is unwrapped to its Python function.
"""

import numpy as np
import pandas as pd

# Loaded once per worker, not per batch.
STELLAR = {"Star", "RRLyr", "EB*", "Mira", "LPV*", "V*", "Cepheid", "WD*"}


def filter_leveltwo(cdsxmatch: pd.Series, rb: pd.Series, cmagpsfc: pd.Series) -> pd.Series:
    """Real-looking alerts, not known stars, brighter now than ever before.

    Parameters
    ----------
    cdsxmatch: the SIMBAD class Fink's cross-match gave (`Unknown` if none)
    rb: the real-bogus score of the current detection
    cmagpsfc: the light curve: earlier magnitudes (NaN where there was only
        an upper limit), then the current one

    Returns
    -------
    pd.Series of bool, one per alert
    """
    not_stellar = ~cdsxmatch.isin(STELLAR)
    real = rb > 0.5

    def brightest_now(mags) -> bool:
        mags = np.asarray(mags, dtype=float)
        earlier = mags[:-1][~np.isnan(mags[:-1])]
        # No earlier detection: a new source is "brightest now".
        return bool(not np.isnan(mags[-1]) and (earlier.size == 0 or mags[-1] <= earlier.min()))

    rising = cmagpsfc.apply(brightest_now).astype(bool)
    return not_stellar & real & rising


def on_frame(alerts: pd.DataFrame) -> pd.Series:
    """The same batch as one DataFrame (`dataframe = true` in fink.toml):
    every column the stream reads, structs as one dict per row.
    """
    rb = alerts["candidate"].map(lambda c: (c or {}).get("rb") or 0.0)
    return rb > 0.5
