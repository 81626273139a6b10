"""Input checks shared by the public API: every bad input becomes a clear Python exception
before any native code runs, so a failed call leaves the caller's objects as they were."""
from __future__ import annotations

import numbers
from typing import Iterable, Sequence

import numpy as np

HIDDEN_ACTIVATIONS = ("relu", "leaky_relu", "tanh", "sigmoid", "linear")
OUTPUT_ACTIVATIONS = ("sigmoid", "softmax", "linear")
LOSSES = ("bce", "ce", "mse")
# which losses each output supports (bce/ce are computed from the logits, stably)
VALID_PAIRS = {("sigmoid", "bce"), ("softmax", "ce"), ("linear", "mse"), ("sigmoid", "mse")}
DEFAULT_LOSS = {"sigmoid": "bce", "softmax": "ce", "linear": "mse"}
DTYPES = {"float64": np.float64, "float32": np.float32}
INT32_MAX = 2**31 - 1  # the native core sizes layers, examples and batches with C int


def _is_real(v) -> bool:
    """A real number but not a bool (fast path for the built-in types; ABC checks are slow)."""
    t = type(v)
    return t is float or t is int or (isinstance(v, numbers.Real) and not isinstance(v, bool))


def _is_int(v) -> bool:
    return type(v) is int or (isinstance(v, numbers.Integral) and not isinstance(v, bool))


def check_choice(value, allowed: Iterable[str], what: str) -> str:
    allowed = tuple(allowed)
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"unknown {what} {value!r}; expected one of {', '.join(allowed)}")
    return value


def check_dtype(dtype) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError as e:
        raise TypeError(f"dtype must be 'float64' or 'float32', got {dtype!r}") from e
    if dt not in (np.dtype(np.float64), np.dtype(np.float32)):
        raise TypeError(f"dtype must be 'float64' or 'float32', got {dt}")
    return dt


def as_array(a, name: str, dtype: np.dtype, ndim: int = 2, rows: int | None = None, cols: int | None = None,
             finite: bool = True) -> np.ndarray:
    """A C-contiguous array of `dtype` (a new array whenever conversion is needed; never a view the
    native code could write through), after checking kind, shape, emptiness and finiteness."""
    if a is None:
        raise TypeError(f"{name} is required")
    arr = np.asarray(a)
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be a numeric array, got dtype {arr.dtype}")
    if arr.ndim != ndim:
        hint = " (examples are columns: reshape a vector to (n, m) or (1, m))" if ndim == 2 else ""
        raise ValueError(f"{name} must be {ndim}-D, got shape {arr.shape}{hint}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape})")
    if rows is not None and arr.shape[0] != rows:
        raise ValueError(f"{name} has {arr.shape[0]} rows, expected {rows} (shape {arr.shape}; examples are columns)")
    if cols is not None and arr.shape[1] != cols:
        raise ValueError(f"{name} has {arr.shape[1]} columns (examples), expected {cols}")
    out = np.ascontiguousarray(arr, dtype=dtype)
    if finite and not np.isfinite(out).all():
        bad = np.argwhere(~np.isfinite(out))[0]
        raise ValueError(f"{name} contains NaN or Inf (first at index {tuple(int(i) for i in bad)})")
    return out


def check_labels(Y: np.ndarray, loss: str) -> None:
    if loss == "bce":
        if Y.min() < 0 or Y.max() > 1:
            raise ValueError(f"bce labels must lie in [0, 1], got values in [{Y.min():g}, {Y.max():g}]")
    elif loss == "ce":
        if Y.min() < 0:
            raise ValueError("ce labels must be non-negative (one-hot or probability columns)")
        sums = Y.sum(axis=0, dtype=np.float64)
        if not np.allclose(sums, 1.0, rtol=0, atol=1e-6):
            j = int(np.argmax(np.abs(sums - 1.0)))
            raise ValueError(f"ce labels must be one-hot (each column sums to 1); column {j} sums to {sums[j]:g}"
                             " — use dnnkit.data.one_hot(labels)")


def check_nonneg(value, name: str) -> float:
    if not _is_real(value):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    v = float(value)
    if not np.isfinite(v) or v < 0:
        raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
    return v


def check_positive_int(value, name: str, minimum: int = 1, maximum: int | None = None) -> int:
    if not _is_int(value):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if int(value) < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and int(value) > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return int(value)


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
    out = []
    for l, D in enumerate(seq):
        if D is None:
            out.append(None)
            continue
        if keep[l] >= 1.0:
            raise ValueError(f"a mask is given for layer {l} but its keep_prob is 1; pass the keep_prob used to "
                             "draw it")
        arr = as_array(D, f"masks[{l}]", dtype, rows=dims[l], cols=m)
        if not np.all((arr == 0) | (arr == 1)):
            raise ValueError(f"masks[{l}] must contain only 0 and 1")
        out.append(arr)
    return out
