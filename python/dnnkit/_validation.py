"""Every argument check of the public API, and every message it gives: each rule is written here once and
the other modules call it. A bad input becomes a clear Python exception naming the argument before any
native code runs, so a failed call leaves the caller's objects as they were.

(``reference.py``, the NumPy oracle, keeps its own few checks on purpose: it must not depend on the code it
checks.)"""
from __future__ import annotations

import math
import numbers
import os
import re
from typing import Iterable, Sequence

import numpy as np

from . import _core

HIDDEN_ACTIVATIONS = ("relu", "leaky_relu", "tanh", "sigmoid", "linear")
OUTPUT_ACTIVATIONS = ("sigmoid", "softmax", "linear")
LOSSES = ("bce", "ce", "mse")
# which losses each output supports (bce/ce are computed from the logits, stably)
VALID_PAIRS = {("sigmoid", "bce"), ("softmax", "ce"), ("linear", "mse"), ("sigmoid", "mse")}
DEFAULT_LOSS = {"sigmoid": "bce", "softmax": "ce", "linear": "mse"}
DTYPES = {"float64": np.float64, "float32": np.float32}
INT32_MAX = 2**31 - 1  # the native core sizes examples and batches with C int
# The native core's limits, defined once in C++ (arch.hpp MAX_UNITS, parallel.hpp max_threads) and exported:
MAX_LAYER_UNITS = int(_core.MAX_LAYER_UNITS)  # units in one layer (2^30)
MAX_THREADS = int(_core.MAX_THREADS)          # max(1024, 4 x the cores): OpenMP aborts when it cannot start threads


def _is_real(v) -> bool:
    """A real number but not a bool (fast path for the built-in types; ABC checks are slow)."""
    t = type(v)
    return t is float or t is int or (isinstance(v, numbers.Real) and not isinstance(v, bool))


def _is_int(v) -> bool:
    return type(v) is int or (isinstance(v, numbers.Integral) and not isinstance(v, bool))


def _is_seq(x) -> bool:
    """A sized sequence that is not a string."""
    return not isinstance(x, (str, bytes)) and hasattr(x, "__len__")


# ------------------------------------------------------------------------------------------ scalars

def check_bool(value, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def check_real(value, name: str, lo=None, hi=None, lo_open: bool = False, hi_open: bool = False) -> float:
    """A finite real number (not a bool) within the optional bounds (closed unless ``*_open``)."""
    if not _is_real(value):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    v = float(value)
    ok = math.isfinite(v)
    if ok and lo is not None:
        ok = v > lo if lo_open else v >= lo
    if ok and hi is not None:
        ok = v < hi if hi_open else v <= hi
    if not ok:
        if lo is not None and hi is not None:
            cond = f" and in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
        elif lo is not None:
            cond = f" and {'>' if lo_open else '>='} {lo:g}"
        elif hi is not None:
            cond = f" and {'<' if hi_open else '<='} {hi:g}"
        else:
            cond = ""
        raise ValueError(f"{name} must be finite{cond}, got {value!r}")
    return v




def check_nonneg(value, name: str) -> float:
    return check_real(value, name, lo=0.0)


def check_positive_int(value, name: str, minimum: int = 1, maximum: int | None = None) -> int:
    """An integer (not a bool) >= minimum (and <= maximum)."""
    if not _is_int(value):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if int(value) < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and int(value) > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return int(value)


def check_eps(eps) -> float:
    """A finite-difference step in (0, 1)."""
    if not _is_real(eps) or not (math.isfinite(float(eps)) and 0 < float(eps) < 1):
        raise ValueError(f"eps must be a number in (0, 1), got {eps!r}")
    return float(eps)


def check_num_threads(n) -> int:
    """A thread count for the native core: 0 (OpenMP's default) .. MAX_THREADS."""
    if not _is_int(n) or not 0 <= n <= MAX_THREADS:
        raise ValueError(f"n must be an integer in [0, {MAX_THREADS}], got {n!r}")
    return int(n)


def check_layer_dims(layer_dims, name: str = "layer_dims") -> list[int]:
    """[n_x, n_1, ..., n_L]: at least two integer sizes in [1, MAX_LAYER_UNITS]."""
    if not _is_seq(layer_dims):
        raise TypeError(f"{name} must be a sequence of ints, got {layer_dims!r}")
    dims = list(layer_dims)
    if len(dims) < 2:
        raise ValueError(f"{name} needs at least 2 entries (input and output), got {dims}")
    for d in dims:
        if not _is_int(d):
            raise TypeError(f"layer sizes must be integers, got {d!r} in {dims}")
    dims = [int(d) for d in dims]
    if any(d < 1 for d in dims):
        raise ValueError(f"every layer size must be >= 1, got {dims}")
    if any(d > MAX_LAYER_UNITS for d in dims):
        raise ValueError(f"every layer size must be <= {MAX_LAYER_UNITS}, got {dims}")
    return dims


def as_generator(rng, name: str = "rng", legacy: bool = False):
    """None (fresh entropy) / an int seed >= 0 / an ``np.random.Generator`` -> a Generator; with ``legacy``
    an ``np.random.RandomState`` is passed through as well (it draws as the course code does)."""
    if rng is None:
        return np.random.default_rng()
    if isinstance(rng, np.random.Generator) or (legacy and isinstance(rng, np.random.RandomState)):
        return rng
    if _is_int(rng):
        if rng < 0:
            raise ValueError(f"{name}: an int seed must be >= 0, got {rng}")
        return np.random.default_rng(int(rng))
    kinds = "None, an int seed, an np.random.Generator" + (" or an np.random.RandomState" if legacy else "")
    raise TypeError(f"{name} must be {kinds}, got {type(rng).__name__}")


def check_file_path(path, name: str = "path") -> str:
    """An existing file's path (str or os.PathLike) -> str."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name} must be a str or os.PathLike, got {type(path).__name__}")
    p = os.fspath(path)
    if not os.path.isfile(p):
        raise ValueError(f"no such file: {p!r}")
    return p


def check_choice(value, allowed: Iterable[str], what: str) -> str:
    allowed = tuple(allowed)
    if not isinstance(value, str) or value not in allowed:
        word = what.split()[-1]
        kinds = "values" if "_" in word else word + ("es" if word.endswith("s") else "s")
        raise ValueError(f"unknown {what} {value!r}; valid {kinds}: {', '.join(allowed)}")
    return value


def check_dtype(dtype) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError as e:
        raise TypeError(f"dtype must be 'float64' or 'float32', got {dtype!r}") from e
    if dt not in (np.dtype(np.float64), np.dtype(np.float32)):
        raise TypeError(f"dtype must be 'float64' or 'float32', got {dt}")
    return dt


def as_array(a, name: str, dtype=None, ndim: int | None = 2, rows: int | None = None, cols: int | None = None,
             finite: bool = True, allow_empty: bool = False) -> np.ndarray:
    """An array after checking kind (real numeric: bool, int or float), ``ndim``, emptiness, ``rows`` /
    ``cols`` and finiteness. With a ``dtype``: a C-contiguous array of it (a new array whenever conversion is
    needed; never a view the native code could write through); without: ``np.asarray(a)`` as it is."""
    if a is None:
        raise TypeError(f"{name} must be an array, got None")
    try:
        arr = np.asarray(a)
    except Exception as exc:  # ragged nested lists and the like
        raise ValueError(f"{name} could not be converted to an array: {exc}") from None
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be a real numeric array, got dtype {arr.dtype}")
    if ndim is not None and arr.ndim != ndim:
        hint = " (examples are columns: reshape a vector to (n, m) or (1, m))" if ndim == 2 else ""
        raise ValueError(f"{name} must be {ndim}-D, got shape {arr.shape}{hint}")
    if not allow_empty and arr.size == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape})")
    if rows is not None and arr.shape[0] != rows:
        raise ValueError(f"{name} has {arr.shape[0]} rows, expected {rows} (shape {arr.shape}; examples are columns)")
    if cols is not None and arr.shape[1] != cols:
        raise ValueError(f"{name} has {arr.shape[1]} columns (examples), expected {cols}")
    if dtype is None:
        out = arr
    else:
        with np.errstate(over="ignore"):  # a value beyond the dtype's range becomes Inf, rejected below
            out = np.ascontiguousarray(arr, dtype=dtype)
    if finite and out.dtype.kind == "f" and not np.isfinite(out).all():
        bad = np.argwhere(~np.isfinite(out))[0]
        raise ValueError(f"{name} contains NaN or Inf (first at index {tuple(int(i) for i in bad)})")
    return out


def as_float_array(a, name: str) -> np.ndarray:
    """A validated 2-D floating array (float dtypes kept, others converted to float64)."""
    arr = as_array(a, name)
    return arr if arr.dtype.kind == "f" else arr.astype(np.float64)


def check_labels(Y: np.ndarray, loss: str) -> None:
    if loss == "bce":
        if Y.min() < 0 or Y.max() > 1:
            raise ValueError(f"bce labels must lie in [0, 1], got values in [{Y.min():g}, {Y.max():g}]")
    elif loss == "ce":
        if Y.min() < 0:
            raise ValueError("ce labels must be non-negative (one-hot or probability columns)")
        sums = Y.sum(axis=0, dtype=np.float64)
        dev = np.abs(sums - 1.0)
        if not dev.max() <= 1e-6:  # np.allclose(sums, 1, rtol=0, atol=1e-6) without its ~30 us of overhead; NaN fails
            j = int(np.argmax(np.where(np.isnan(dev), np.inf, dev)))
            raise ValueError(f"ce labels must be one-hot (each column sums to 1); column {j} sums to {sums[j]:g}"
                             " — use dnnkit.data.one_hot(labels)")


def _check_kp(v, where: str) -> float:
    if not _is_real(v):
        raise TypeError(f"keep_prob{where} must be a number, got {v!r}")
    v = float(v)
    if not (0.0 < v <= 1.0):
        raise ValueError(f"keep_prob{where} must lie in (0, 1], got {v!r}")
    return v


def normalize_keep_prob(keep_prob, L: int) -> list[float]:
    """keep_prob -> list of length L: index 0 is the input, 1..L-1 the hidden layers (never the output).

    A float applies to every hidden layer (not the input); a sequence of L-1 values gives the hidden layers;
    a sequence of L values gives [input, hidden_1, ..., hidden_{L-1}]."""
    if keep_prob is None:
        return [1.0] * L
    if _is_real(keep_prob):
        kp = _check_kp(keep_prob, "")
        return [1.0] + [kp] * (L - 1)
    if isinstance(keep_prob, (str, bytes)):
        raise TypeError(f"keep_prob must be a float or a sequence of floats, got {keep_prob!r}")
    try:
        seq = list(keep_prob)
    except TypeError:
        raise TypeError(f"keep_prob must be a float or a sequence, got {keep_prob!r}") from None
    if len(seq) == L - 1:
        return [1.0] + [_check_kp(v, f"[{i}]") for i, v in enumerate(seq)]
    if len(seq) == L:
        return [_check_kp(v, f"[{i}]") for i, v in enumerate(seq)]
    raise ValueError(f"keep_prob has {len(seq)} values; give one float, {L - 1} (hidden layers) or {L} "
                     "(input + hidden layers) — never the output layer")


def check_seed(seed, name: str = "seed", bits: int = 64) -> int:
    if not _is_int(seed):
        raise TypeError(f"{name} must be a non-negative integer, got {seed!r}")
    if not (0 <= int(seed) < 2**bits):
        raise ValueError(f"{name} must lie in [0, 2**{bits}), got {seed}")
    return int(seed)


def check_step(step, name: str = "step") -> int:
    """A dropout step counter: the RNG key holds it in 32 bits."""
    return check_seed(step, name, bits=32)


def normalize_masks(masks, keep: Sequence[float], dims: Sequence[int], m: int, dtype) -> list:
    """Explicit dropout masks -> list of length L (layer index 0..L-1), entries None or 0/1 arrays."""
    L = len(dims) - 1
    seq = list(masks)
    if len(seq) == L - 1:
        seq = [None] + seq
    elif len(seq) != L:
        raise ValueError(f"masks has {len(seq)} entries; give {L - 1} (hidden layers) or {L} (input + hidden)")
    out: list[np.ndarray | None] = []
    for l, D in enumerate(seq):
        if D is None:
            out.append(None)
            continue
        arr = as_array(D, f"masks[{l}]", dtype, rows=dims[l], cols=m)
        if not np.all((arr == 0) | (arr == 1)):
            raise ValueError(f"masks[{l}] must contain only 0 and 1")
        if keep[l] >= 1.0:
            # keep_prob 1 keeps every unit: an all-ones mask is exactly the mask it draws (course-style code draws
            # D for every layer) and means no dropout there; a zero would drop a unit that can never be dropped
            if not np.all(arr == 1):
                where = tuple(int(i) for i in np.argwhere(arr == 0)[0])
                raise ValueError(f"masks[{l}] drops units (a 0 at {where}) but layer {l}'s keep_prob is 1, which "
                                 "keeps every unit; pass the keep_prob the mask was drawn with")
            out.append(None)
            continue
        out.append(arr)
    return out


def check_n_threads(value, name: str = "n_threads") -> int:
    """A per-call thread count: an integer in [1, MAX_THREADS] (None, "leave the setting", is the caller's)."""
    if not _is_int(value):
        raise TypeError(f"{name} must be a positive integer or None, got {value!r}")
    if not 1 <= int(value) <= MAX_THREADS:
        raise ValueError(f"{name} must lie in [1, {MAX_THREADS}], got {value}")
    return int(value)


# ----------------------------------------------------------------------------- parameter / gradient dict keys

class ParameterKeyError(KeyError, ValueError):
    """A parameter or gradient dict with a missing or an unexpected key (a typo such as ``"W9"`` on a 3-layer
    net). Both a ``KeyError`` (what a missing key always raised) and a ``ValueError`` (what every other bad
    argument raises), so either ``except`` keeps working. ``.key`` is the offending key."""

    def __init__(self, message: str, key=None):
        super().__init__(message)
        self.key = key

    def __str__(self) -> str:  # KeyError would print the repr of the message (in quotes)
        return str(self.args[0]) if self.args else ""


_COURSE_INTERMEDIATE = re.compile(r"d[AZ]\d+")  # the course's backward also returns dA<l>, dZ<l>: not gradients


def _key_list(names) -> str:
    names = list(names)
    return ", ".join(names) if len(names) <= 8 else ", ".join(names[:4] + ["...", *names[-2:]])


def check_param_keys(d: dict, names: Sequence[str], what: str, dims=None) -> None:
    """A params dict must hold exactly ``names`` (W1, b1, ...): a missing or an extra key raises
    :class:`ParameterKeyError` naming it."""
    net = f"a {list(dims)} network" if dims is not None else "these parameters"
    for name in names:
        if name not in d:
            raise ParameterKeyError(f"{what} is missing {name!r} ({net} needs {_key_list(names)})", name)
    known = set(names)
    for key in d:
        if key not in known:
            raise ParameterKeyError(f"{what} has an unexpected key {key!r}: {net} has {_key_list(names)} — a typo, "
                                    "or parameters of a different architecture?", key)


def grad_keys(d: dict, names: Sequence[str], what: str = "grads", dims=None) -> dict:
    """Map each parameter name (W1, b1, ...) to its key in a gradient dict, which may use "dW1" (the course's
    and dnnkit's form) or "W1". The course's intermediates dA<l> / dZ<l> are allowed and ignored; any other key,
    a missing one, or a name given both ways raises :class:`ParameterKeyError`."""
    net = f"a {list(dims)} network" if dims is not None else "these parameters"
    want = ["d" + n for n in names]
    out = {}
    for name, dname in zip(names, want):
        if dname in d and name in d:
            raise ParameterKeyError(f"{what} has both {dname!r} and {name!r}: give each gradient once", name)
        if dname in d:
            out[name] = dname
        elif name in d:
            out[name] = name
        else:
            raise ParameterKeyError(f"{what} is missing {dname!r} ({net} needs {_key_list(want)})", dname)
    used = set(out.values())
    for key in d:
        if key not in used and not (isinstance(key, str) and _COURSE_INTERMEDIATE.fullmatch(key)):
            raise ParameterKeyError(f"{what} has an unexpected key {key!r}: {net} has gradients "
                                    f"{_key_list(want)} — a typo, or gradients of a different architecture?", key)
    return out


def check_indices(indices, n: int, name: str = "indices") -> np.ndarray:
    """Flat coordinate indices (a range or a sequence/array of integers) -> 1-D int64 array. Not integers (a
    float would be truncated silently, a bool array is a mask, not indices) -> TypeError; beyond int64 ->
    IndexError like any other index out of [0, n)."""
    if isinstance(indices, range):
        return np.arange(indices.start, indices.stop, indices.step, dtype=np.int64)
    if isinstance(indices, (str, bytes, dict, set)) or indices is None:
        raise TypeError(f"{name} must be a range, a slice or a sequence of integers, got {type(indices).__name__}")
    try:
        arr = np.asarray(indices)
    except (TypeError, ValueError, OverflowError) as e:
        raise TypeError(f"{name} must be a sequence of integers ({e})") from None
    if arr.size == 0:
        return np.zeros(0, np.int64)
    if arr.dtype == object:
        if not all(_is_int(v) for v in arr.reshape(-1)):
            raise TypeError(f"{name} must contain integers only")
        if any(not -(2**63) <= int(v) < 2**63 for v in arr.reshape(-1)):
            raise IndexError(f"{name} must lie in [0, {n})")
        arr = arr.astype(np.int64)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must contain integers, got dtype {arr.dtype}")
    if arr.dtype.kind == "u" and arr.size and int(arr.max()) >= 2**63:
        raise IndexError(f"{name} must lie in [0, {n})")
    return arr.astype(np.int64).reshape(-1)
