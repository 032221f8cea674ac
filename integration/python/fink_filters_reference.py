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
    # Served by fink's Python workers (fink-filters' own functions).
    "fast_riser_candidates": "fast_riser_candidates_",
    "magnetic_cvs": "magnetic_cvs",
    "yso_spicy_candidates": "yso_spicy_candidates",
}
LSST = [
    "uniform_sample",
    "in_tns",
    "in_simbad",
    "is_solar_system",
    "remove_unlikely_transients",
    "most_likely_sn",
    "hostless_candidate",
    # Served by fink's Python workers (fink-filters' own functions).
    "extragalactic_lt20mag_candidate",
    "extragalactic_new_candidate",
    "extragalactic_svom",
    "faint_trails",
    "fast_transient_gvom",
    "sn_near_galaxy_candidate",
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

# The filters print (magnetic_cvs: "Telegram token ... is not set"): keep
# stdout for the JSON answer.
OUT = sys.stdout
sys.stdout = sys.stderr

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402


SCHEMA = {}


def read(paths):
    files = []
    for p in paths:
        files += sorted(glob.glob(os.path.join(p, "**", "*.parquet"), recursive=True)) if os.path.isdir(p) else [p]
    # Object columns, None for nulls: what Spark hands pandas UDFs.
    tables = [pq.read_table(f) for f in files]
    if tables:
        SCHEMA["schema"] = tables[0].schema
    frames = [t.to_pandas() for t in tables]
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
        elif present and len(present) == len(values) and all(isinstance(v, bool) for v in present):
            # Booleans without nulls: a bool Series, as Arrow gives pandas
            # (`~` on objects would invert Python ints).
            s = pd.Series(values, dtype=bool)
        else:
            # Strings, booleans, structs: objects, None for null.
            s = pd.Series(values, dtype=object)
    return s


HISTORY = [("candidate", "prv_candidates"), ("diaSource", "prvDiaSources")]


def history(pdf, name):
    """concat_col, as Fink's distribution adds c<field>c before its filters:
    the history's values of the field, then the current one (arrays of the
    field's type, NaN for a null number), or None if the data has neither."""
    field = name[1:-1]
    if name == "cstampDatac" and "cutoutScience" in pdf.columns:
        return column(pdf, "cutoutScience.stampData")
    schema = SCHEMA.get("schema")
    for current, hist in HISTORY:
        if current not in pdf.columns or hist not in pdf.columns:
            continue
        ctype = schema.field(current).type
        if ctype.get_field_index(field) < 0:
            continue
        dtype = ctype.field(field).type.to_pandas_dtype()
        out = []
        for now, prv in zip(pdf[current], pdf[hist]):
            values = [p.get(field) for p in (prv if prv is not None else [])]
            values.append(now.get(field) if isinstance(now, dict) else None)
            if np.issubdtype(dtype, np.floating):
                out.append(np.array([np.nan if v is None else v for v in values], dtype=dtype))
            else:
                out.append(np.array(values, dtype=dtype if None not in values else object))
        return pd.Series(out)
    return None


def argument(pdf, flat, name, path=None):
    if path is not None:
        s = column(pdf, path)
        return s
    cands = [p for p in flat if p.endswith(name)]
    exact = [p for p in cands if p.split(".")[-1] == name]
    if len(cands) > 1:
        roots = [p for p in exact if "." not in p]
        cands = exact if len(exact) == 1 else roots
    if not cands and len(name) > 2 and name.startswith("c") and name.endswith("c"):
        h = history(pdf, name)
        if h is not None:
            return h
    if not cands:
        # Not in this data (in_tns' tns_fullname): null for every alert.
        return pd.Series([None] * len(pdf))
    s = column(pdf, cands[0])
    if s.apply(lambda x: isinstance(x, dict)).any():
        # A struct: a DataFrame of its fields, NaN where the struct is null.
        keys = next(x for x in s if isinstance(x, dict)).keys()
        return pd.DataFrame([x if isinstance(x, dict) else {k: None for k in keys} for x in s])
    return s


# Arguments Fink's runner cannot find by name, given by path (as the
# catalogue's `args`): yso_spicy reads lc_features_r.linear_fit_slope.
PATHS = {"yso_spicy_candidates": {"linear_fit_slope": "lc_features_r.linear_fit_slope"}}
# Columns of Fink's science modules that some data lacks: the topic is left
# out where they are missing (fink reports its alerts in error there).
REQUIRES = {"yso_spicy_candidates": ["spicy_id", "spicy_class", "lc_features_r"]}


def run(func, pdf, flat, topic=None):
    names = list(inspect.signature(func).parameters)
    paths = PATHS.get(topic, {})
    args = [argument(pdf, flat, n, paths.get(n)) for n in names if n != "flavor"]
    return np.asarray(func(*args), dtype=bool)


def main():
    survey, paths = sys.argv[1], sys.argv[2:]
    pdf = read(paths)
    flat = flatten(pdf)
    out = {}
    if survey == "ztf":
        ids = pdf["objectId"].astype(str).tolist()
        for topic, fname in ZTF.items():
            if any(c not in pdf.columns for c in REQUIRES.get(topic, [])):
                continue
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
                keep = run(func, pdf, flat, topic)
            out[topic] = [i for i, k in zip(ids, keep) if k]
    else:
        ids = pdf["diaSourceId"].astype(str).tolist()
        for topic in LSST:
            mod = importlib.import_module(f"fink_filters.rubin.livestream.filter_{topic}.filter")
            keep = run(getattr(mod, topic), pdf, flat)
            out[topic] = [i for i, k in zip(ids, keep) if k]
    json.dump(out, OUT)


if __name__ == "__main__":
    main()
