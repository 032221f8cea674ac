"""Run fink-filters' own livestream filter functions on alert files.

The reference for fink's catalogue (conf/fink/ztf.toml, conf/fink/lsst.toml):
the pandas functions of fink-filters (PyPI, 7.45), unmodified, on the same
alerts. Their modules import Spark and Telegram helpers at module level;
those imports are stubbed here (pandas_udf is the identity decorator). The
filter logic runs as published.

Arguments are found as fink's Spark runner finds them
(fink_utils.spark.utils.get_cols_from_args): the column whose flattened path
ends with the argument's name, preferring an exact last segment. A struct
argument (diaSource) is a DataFrame of its fields, as pandas UDFs get it.

    python fink_filters_reference.py ztf|lsst FILE_OR_DIR...
prints {"filter": [ids of kept alerts in file order], ...} as JSON; ids are
objectId (ZTF) or diaSourceId (LSST).
"""

import glob
import importlib
import importlib.abc
import importlib.machinery
import inspect
import json
import os
import sys
import types

ZTF = {
    "early_sn_candidates": "early_sn_candidates_",
    "sn_candidates": "sn_candidates_",
    "kn_candidates": "kn_candidates_",
    "microlensing_candidates": "microlensing_candidates_",
    "sso_ztf_candidates": "sso_ztf_candidates_",
    "sso_fink_candidates": "sso_fink_candidates_",
    "simbad_grav_candidates": "simbad_grav_candidates_",
    "blazar": "blazar",
    "yso_candidates": "yso_candidates",
    "tns_match": "tns_match_",
    "vra": "vra",
    "unknowns": "unknowns_",
    "first_pass_candidates": "first_pass_candidates_",
}
LSST = [
    "uniform_sample",
    "in_tns",
    "in_simbad",
    "is_solar_system",
    "remove_unlikely_transients",
    "most_likely_sn",
    "hostless_candidate",
]

STUBBED = ("pyspark", "fink_utils.spark", "fink_utils.tg_bot", "fink_filters.tester")


class _Anything:
    """Stands for any Spark or Telegram name the modules import."""

    def __init__(self, *a, **k):
        pass

    def __call__(self, *a, **k):
        return _Anything()

    def __getattr__(self, name):
        return _Anything()


class _StubModule(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        if name == "pandas_udf":
            return lambda *a, **k: (lambda f: f)
        return _Anything()


class _Stubs(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path, target=None):
        if any(fullname == s or fullname.startswith(s + ".") for s in STUBBED):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        m = _StubModule(spec.name)
        m.__path__ = []
        return m

    def exec_module(self, module):
        pass


sys.meta_path.insert(0, _Stubs())

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402


def read(paths):
    files = []
    for p in paths:
        files += sorted(glob.glob(os.path.join(p, "**", "*.parquet"), recursive=True)) if os.path.isdir(p) else [p]
    # Object columns, None for nulls: what Spark hands pandas UDFs.
    frames = [pq.read_table(f).to_pandas() for f in files]
    pdf = pd.concat(frames, ignore_index=True)
    for c in pdf.columns:
        if pd.api.types.is_string_dtype(pdf[c]) and pdf[c].dtype != object:
            # pandas 3 reads strings as its str dtype (NaN for null); Spark
            # hands pandas UDFs objects, None for null.
            pdf[c] = pd.Series([None if pd.isna(v) else v for v in pdf[c]], dtype=object)
    return pdf


def flatten(pdf):
    """Flattened column paths -> how to get them, as return_flatten_names."""
    out = {c: ("col", c) for c in pdf.columns}

    def walk(prefix, getter, sample_values):
        keys = []
        for v in sample_values:
            if isinstance(v, dict):
                keys = list(v.keys())
                break
        for k in keys:
            path = prefix + "." + k
            out[path] = ("field", path)

    for c in pdf.columns:
        walk(c, None, pdf[c].values)
    return out


def column(pdf, path):
    parts = path.split(".")
    s = pdf[parts[0]]
    for p in parts[1:]:
        values = [x.get(p) if isinstance(x, dict) else None for x in s]
        present = [v for v in values if v is not None]
        if present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
            # Numbers: float64 with NaN for null, as Arrow gives pandas.
            nulls = len(present) < len(values)
            s = pd.Series([np.nan if v is None else v for v in values], dtype=float if nulls else None)
        else:
            # Strings, booleans, structs: objects, None for null.
            s = pd.Series(values, dtype=object)
    return s


def argument(pdf, flat, name):
    cands = [p for p in flat if p.endswith(name)]
    exact = [p for p in cands if p.split(".")[-1] == name]
    if len(cands) > 1:
        roots = [p for p in exact if "." not in p]
        cands = exact if len(exact) == 1 else roots
    if not cands:
        # Not in this data (in_tns' tns_fullname): null for every alert.
        return pd.Series([None] * len(pdf))
    s = column(pdf, cands[0])
    if s.apply(lambda x: isinstance(x, dict)).any():
        # A struct: a DataFrame of its fields, NaN where the struct is null.
        keys = next(x for x in s if isinstance(x, dict)).keys()
        return pd.DataFrame([x if isinstance(x, dict) else {k: None for k in keys} for x in s])
    return s


def run(func, pdf, flat):
    names = list(inspect.signature(func).parameters)
    args = [argument(pdf, flat, n) for n in names if n != "flavor"]
    return np.asarray(func(*args), dtype=bool)


def main():
    survey, paths = sys.argv[1], sys.argv[2:]
    pdf = read(paths)
    flat = flatten(pdf)
    out = {}
    if survey == "ztf":
        ids = pdf["objectId"].astype(str).tolist()
        for topic, fname in ZTF.items():
            mod = importlib.import_module(f"fink_filters.ztf.livestream.filter_{topic}.filter")
            func = getattr(mod, fname)
            if fname == "unknowns_":
                # Its Spark wrapper's arguments, in its order.
                keep = np.asarray(
                    func(
                        *[
                            argument(pdf, flat, n)
                            for n in list(inspect.signature(func).parameters)
                        ]
                    ),
                    dtype=bool,
                )
            else:
                keep = run(func, pdf, flat)
            out[topic] = [i for i, k in zip(ids, keep) if k]
    else:
        ids = pdf["diaSourceId"].astype(str).tolist()
        for topic in LSST:
            mod = importlib.import_module(f"fink_filters.rubin.livestream.filter_{topic}.filter")
            keep = run(getattr(mod, topic), pdf, flat)
            out[topic] = [i for i, k in zip(ids, keep) if k]
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
