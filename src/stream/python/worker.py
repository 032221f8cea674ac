"""fink's Python filter worker: runs users' filter functions on batches.

Shipped inside the fink binary and started as `python -c <this file>`. It
needs pyarrow and pandas, plus whatever the filters' modules import. One
worker serves every Python filter of a fink instance; it stays alive
between batches, so modules (and the catalogues they load at import) are
loaded once.

Protocol, on the pipes fink gave it (stdin: requests, fd 3 duplicated from
the original stdout: answers; the filters' own prints go to stderr):
  frame = u32 LE header length, header (JSON), u64 LE body length, body
  load  {"op": "load", "id", "kind": "module"|"file", "target", "function",
         "dataframe"} -> {"ok": true, "params": [...]}
  eval  {"op": "eval", "id", "rows", "columns": [{"name", "key", "size"}],
         "keep": [key], "evict": [key]} + the columns of size > 0, each an
        Arrow IPC stream, one after the other; a column of size 0 is the
        one converted earlier under its key. Converted columns named in
        "keep" are kept for the next filter; "evict" drops old ones. fink
        decides both, so it knows what each worker holds.
        -> {"ok": true, "seconds"} + Arrow IPC stream of one boolean column
  eval  {"op": "eval", "id"} + Arrow IPC stream of the whole batch (a
        filter that takes a DataFrame)
  fork  {"op": "fork", "socket", "token"} -> {"ok": true, "pid"}: a copy of
        this process (its imports and loaded filters) serves on a new
        connection to the Unix socket, first sending {"pid", "token"}; the
        worker fink forked it from (a template) reaps it and keeps its
        exit status
  status {"op": "status", "pid"} -> {"ok": true, "code", "signal"} (null
        both when it has not ended within 2 s)
  errors -> {"ok": false, "kind": "import"|"exception"|"return"|"bind",
             "error": "...", "traceback": "..."}
"""

import gc
import hashlib
import importlib
import importlib.util
import io
import json
import os
import signal
import socket
import struct
import sys
import time
import traceback
import types

# Answers go to a private copy of stdout; whatever the filters print goes to
# stderr, never into the protocol.
OUT = os.fdopen(os.dup(1), "wb", buffering=0)
os.dup2(2, 1)
sys.stdout = sys.stderr
IN = os.fdopen(0, "rb", buffering=0)

import warnings  # noqa: E402

# Every fink-filters module declares its Spark pandas UDFs the deprecated
# way; the warning says nothing to a fink operator.
warnings.filterwarnings("ignore", message=".*pandas UDF type.*", category=UserWarning)

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pyarrow as pa  # noqa: E402

FUNCS = {}
# Columns converted to pandas, by content key (see eval). Shared between
# filters only under pandas' copy-on-write (pandas 3 and later), where each
# filter's shallow copy is its own: an in-place change by one filter never
# reaches another.
CACHE = {}
SHARES = int(pd.__version__.split(".")[0]) >= 3


def read_exact(n):
    # Into one buffer of the right size: no regrowing, no final copy.
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = IN.readinto(view[got:])
        if not k:
            sys.exit(0)
        got += k
    return buf


def read_frame():
    (hlen,) = struct.unpack("<I", read_exact(4))
    header = json.loads(bytes(read_exact(hlen)))
    (blen,) = struct.unpack("<Q", read_exact(8))
    return header, read_exact(blen) if blen else b""


def write_frame(header, body=b""):
    h = json.dumps(header).encode()
    OUT.write(struct.pack("<I", len(h)) + h + struct.pack("<Q", len(body)) + body)


def fail(kind, message, tb=""):
    write_frame({"ok": False, "kind": kind, "error": message, "traceback": tb})


def load_function(req):
    if req["kind"] == "file":
        path = req["target"]
        source = req.get("source")
        if source is None:
            with open(path) as f:
                source = f.read()
        # A module name per version: an edited file is a new module.
        digest = hashlib.sha256(source.encode()).hexdigest()[:12]
        name = "fink_user_" + os.path.splitext(os.path.basename(path))[0] + "_" + digest
        module = types.ModuleType(name)
        module.__file__ = path
        # The file's folder is importable, as it is for `python file.py`.
        folder = os.path.dirname(os.path.abspath(path))
        if folder not in sys.path:
            sys.path.insert(0, folder)
        sys.modules[name] = module
        exec(compile(source, path, "exec"), module.__dict__)
    else:
        module = importlib.import_module(req["target"])
    func = getattr(module, req["function"], None)
    if func is None:
        raise LookupError("{} has no function {!r}".format(req["target"], req["function"]))
    # Fink's filters are Spark pandas UDFs: the plain function is `.func`.
    func = getattr(func, "func", func)
    if not callable(func):
        raise TypeError("{}:{} is not a function".format(req["target"], req["function"]))
    code = func.__code__
    params = list(code.co_varnames[: code.co_argcount])
    optional = len(func.__defaults__ or ())
    return func, params, optional


def to_series(column, name):
    """A column as Spark hands it to a pandas UDF: numbers as numpy values
    (NaN for null), strings as objects (None for null), a struct as a
    DataFrame of its fields, a list as an array per row."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    t = column.type
    if pa.types.is_struct(t):
        # flatten(): a null struct makes its fields null.
        fields = column.flatten()
        return pd.DataFrame({t.field(i).name: to_series(fields[i], t.field(i).name) for i in range(t.num_fields)})
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return pd.Series(column.to_pylist(), dtype=object, name=name)
    if (pa.types.is_list(t) or pa.types.is_large_list(t)) and plain_struct(column):
        return list_of_dicts(column, name)
    s = column.to_pandas()
    s.name = name
    return s


def plain_struct(column):
    """A list of structs whose fields all convert to the same Python values
    through to_pylist() as through to_pandas(): floats, strings, booleans,
    and integers without nulls (to_pandas() makes those floats)."""
    t = column.type.value_type
    if not pa.types.is_struct(t):
        return False
    values = column.values
    for i in range(t.num_fields):
        ft = t.field(i).type
        if pa.types.is_floating(ft) or pa.types.is_boolean(ft):
            continue
        if pa.types.is_string(ft) or pa.types.is_large_string(ft):
            continue
        if pa.types.is_integer(ft) and values.field(i).null_count == 0:
            continue
        return False
    return True


def list_of_dicts(column, name):
    """What to_pandas() gives for a list of structs (per row an object array
    of dicts, None for a null list), built from to_pylist(): 2-3x faster on
    Rubin's histories (~240 sources an alert), the bulk of a history
    filter's conversion."""
    rows = column.to_pylist()
    out = np.empty(len(rows), dtype=object)
    for i, r in enumerate(rows):
        if r is not None:
            a = np.empty(len(r), dtype=object)
            a[:] = r
            out[i] = a
    return pd.Series(out, name=name)


def as_mask(result, n):
    """The filter's answer as n booleans, or a message saying what it was."""
    if isinstance(result, pd.DataFrame):
        return None, "returned a DataFrame, not one boolean per row"
    if isinstance(result, pd.Series) and isinstance(result.dtype, pd.BooleanDtype):
        # pandas' nullable booleans: a null keeps nothing, as in Spark.
        values = result.fillna(False).to_numpy(dtype=bool)
    elif isinstance(result, pd.Series):
        values = result.to_numpy()
    elif isinstance(result, (np.ndarray, list, tuple)):
        values = np.asarray(result)
    else:
        return None, "returned {}, not booleans (a pandas Series or an array)".format(type(result).__name__)
    if values.ndim != 1 or len(values) != n:
        return None, "returned {} values for {} rows".format(values.size, n)
    if values.dtype == object:
        if not all(isinstance(v, (bool, np.bool_)) for v in values):
            bad = next(v for v in values if not isinstance(v, (bool, np.bool_)))
            return None, "returned {!r} ({}) among its values, not a boolean".format(bad, type(bad).__name__)
        values = values.astype(bool)
    elif values.dtype != np.bool_:
        return None, "returned values of type {}, not booleans".format(values.dtype)
    return values, None


def evaluate(req, body):
    entry = FUNCS.get(req["id"])
    if entry is None:
        fail("bind", "filter {} is not loaded in this worker".format(req["id"]))
        return
    func, _params, dataframe = entry
    converting = time.perf_counter()
    reused = 0
    if "columns" in req:
        n = req["rows"]
        args = column_args(req, body)
        if args is None:
            return
        reused = sum(1 for c in req["columns"] if not c["size"])
    else:
        batch = pa.ipc.open_stream(io.BytesIO(body)).read_all()
        n = batch.num_rows
        if dataframe:
            args = [batch.to_pandas()]
        else:
            args = [to_series(batch.column(i), batch.schema.names[i]) for i in range(batch.num_columns)]
    started = time.perf_counter()
    converted = started - converting
    try:
        result = func(*args)
    except BaseException as e:  # noqa: B036 (SystemExit from a filter is its error too)
        fail("exception", "{}: {}".format(type(e).__name__, e), traceback.format_exc())
        return
    spent = time.perf_counter() - started
    values, why = as_mask(result, n)
    if why is not None:
        fail("return", why)
        return
    sink = io.BytesIO()
    out = pa.record_batch([pa.array(values, type=pa.bool_())], names=["keep"])
    with pa.ipc.new_stream(sink, out.schema) as w:
        w.write_batch(out)
    write_frame({"ok": True, "seconds": spent, "convert_seconds": converted, "reused": reused}, sink.getvalue())


def column_args(req, body):
    """The arguments of a columns request: each sent column converted (and
    kept when asked), each held one taken from the cache. None after
    answering an error."""
    view = memoryview(body)
    at = 0
    args = []
    for c in req["columns"]:
        size = c["size"]
        if size:
            table = pa.ipc.open_stream(pa.py_buffer(view[at : at + size])).read_all()
            at += size
            s = to_series(table.column(0), c["name"])
            if c["key"] in req.get("keep", ()):
                CACHE[c["key"]] = s
        else:
            s = CACHE.get(c["key"])
            if s is None:
                fail("cache", "column {} is not held by this worker".format(c["name"]))
                return None
        # A shallow copy under copy-on-write: the filter's own to change.
        args.append(s.copy(deep=False) if SHARES else s)
    for k in req.get("evict", ()):
        CACHE.pop(k, None)
    return args


# Exit statuses of the workers forked from this one, by pid.
ENDED = {}


def reap(_signum, _frame):
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        ENDED[pid] = status


def fork(req):
    """Serve as a new worker on the socket fink listens on; the template
    goes on answering fink on its pipes."""
    global IN, OUT
    if signal.getsignal(signal.SIGCHLD) is not reap:
        signal.signal(signal.SIGCHLD, reap)
    # The imported modules' objects are never collected again: the
    # collector would otherwise write to every page of them in each copy.
    gc.freeze()
    pid = os.fork()
    if pid:
        write_frame({"ok": True, "pid": pid})
        return
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    ENDED.clear()
    CACHE.clear()
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.connect(req["socket"])
    fd = conn.detach()
    # The template's pipes are its own: a copy holding them open would hide
    # the template's end from fink.
    IN.close()
    OUT.close()
    null = os.open(os.devnull, os.O_RDONLY)
    if null != 0:
        os.dup2(null, 0)
        os.close(null)
    IN = os.fdopen(fd, "rb", buffering=0)
    OUT = os.fdopen(os.dup(fd), "wb", buffering=0)
    write_frame({"pid": os.getpid(), "token": req["token"]})


def status(req):
    pid = int(req["pid"])
    until = time.monotonic() + 2
    while pid not in ENDED and time.monotonic() < until:
        reap(None, None)
        if pid not in ENDED:
            time.sleep(0.01)
    st = ENDED.pop(pid, None)
    if st is None:
        write_frame({"ok": True, "code": None, "signal": None})
    elif os.WIFSIGNALED(st):
        write_frame({"ok": True, "code": None, "signal": os.WTERMSIG(st)})
    else:
        write_frame({"ok": True, "code": os.WEXITSTATUS(st), "signal": None})


def main():
    while True:
        req, body = read_frame()
        op = req.get("op")
        if op == "load":
            try:
                func, params, optional = load_function(req)
            except BaseException as e:  # noqa: B036
                fail("import", "{}: {}".format(type(e).__name__, e), traceback.format_exc())
                continue
            FUNCS[req["id"]] = (func, params, bool(req.get("dataframe")))
            write_frame({"ok": True, "params": params, "optional": optional, "shares": SHARES})
        elif op == "eval":
            evaluate(req, body)
        elif op == "fork":
            fork(req)
        elif op == "status":
            status(req)
        elif op == "ping":
            write_frame({"ok": True, "python": sys.version.split()[0], "executable": sys.executable})
        else:
            fail("protocol", "unknown request {!r}".format(op))


main()
