"""Flat parameter layout shared by every part of dnnkit.

theta concatenates W1, b1, W2, b2, ..., WL, bL, each in C order.
W[l] is (n[l], n[l-1]); b[l] is (n[l], 1).
"""
from __future__ import annotations

import numpy as np

from . import _validation as V

__all__ = ["layer_slices", "param_views", "params_to_vector", "vector_to_params", "n_params"]


def layer_slices(layer_dims) -> dict[str, tuple[slice, tuple[int, int]]]:
    """{"W1": (slice, shape), "b1": ..., ...} in theta order."""
    dims = V.check_layer_dims(layer_dims)
    out: dict[str, tuple[slice, tuple[int, int]]] = {}
    off = 0
    for l in range(1, len(dims)):
        for name, shape in ((f"W{l}", (dims[l], dims[l - 1])), (f"b{l}", (dims[l], 1))):
            size = shape[0] * shape[1]
            out[name] = (slice(off, off + size), shape)
            off += size
    return out


def n_params(layer_dims) -> int:
    dims = V.check_layer_dims(layer_dims)
    return sum(dims[l] * (dims[l - 1] + 1) for l in range(1, len(dims)))


def param_views(theta: np.ndarray, layer_dims, prefix: str = "") -> dict[str, np.ndarray]:
    """Dict of reshaped views into the flat buffer ``theta`` (no copies)."""
    return {prefix + k: theta[s].reshape(shape) for k, (s, shape) in layer_slices(layer_dims).items()}


def _infer_dims(params: dict, prefix: str = "") -> list[int]:
    L = 0
    while f"{prefix}W{L + 1}" in params:
        L += 1
    if L == 0:
        from ._validation import ParameterKeyError

        raise ParameterKeyError(f"no '{prefix}W1' in the parameter dict (keys: {sorted(map(str, params))})",
                                f"{prefix}W1")
    dims = [np.shape(params[f"{prefix}W1"])[1]] + [np.shape(params[f"{prefix}W{l}"])[0] for l in range(1, L + 1)]
    return dims


def params_to_vector(params: dict, prefix: str = "") -> np.ndarray:
    """Concatenate W1, b1, ..., WL, bL (C order) into one float64 vector.

    ``prefix="d"`` flattens a gradient dict (dW1, db1, ...).
    """
    from ._validation import check_param_keys

    dims = _infer_dims(params, prefix)
    slices = layer_slices(dims)
    if prefix == "d":  # a course-style gradient dict may also hold dA<l> / dZ<l>: ignored
        params = {k: v for k, v in params.items() if not (isinstance(k, str) and k[:2] in ("dA", "dZ"))}
    check_param_keys(params, [prefix + name for name in slices], "the parameter dict")
    parts = []
    for name, (_, shape) in slices.items():
        key = prefix + name
        a = np.asarray(params[key])
        if a.size != shape[0] * shape[1]:
            raise ValueError(f"'{key}' has shape {a.shape}, expected {shape}")
        parts.append(a.reshape(-1))
    return np.concatenate(parts).astype(np.result_type(*parts, np.float32), copy=False)


def vector_to_params(theta, layer_dims, prefix: str = "") -> dict[str, np.ndarray]:
    """Split a flat vector back into a dict of (copied) arrays with the contract's shapes."""
    theta = np.asarray(theta)
    if theta.ndim != 1:
        raise ValueError(f"theta must be 1-D, got shape {theta.shape}")
    need = n_params(layer_dims)
    if theta.size != need:
        raise ValueError(f"theta has {theta.size} entries, layer_dims {list(layer_dims)} need {need}")
    return {k: v.copy() for k, v in param_views(theta, layer_dims, prefix).items()}
