"""Weight initialization for fully-connected nets (the seeds' forms).

W[l] is (n[l], n[l-1]) float64, b[l] is (n[l], 1) zeros.

Gaussian methods draw ``randn(n[l], n[l-1]) * std``:

    random   std = scale (default 0.01; the course's "random x 10" experiment uses scale=10)
    he       std = sqrt(2 / n[l-1])
    lecun    std = sqrt(1 / n[l-1])
    glorot   std = sqrt(2 / (n[l-1] + n[l]))        (alias: xavier)

Uniform methods draw ``U(-a, a)``:

    he_uniform      a = sqrt(6 / n[l-1])
    lecun_uniform   a = sqrt(3 / n[l-1])
    glorot_uniform  a = sqrt(6 / (n[l-1] + n[l]))   (alias: xavier_uniform)
    random_uniform  a = scale (default 0.01)

For every method but the two ``random*`` ones, ``scale`` is an optional gain multiplying the std / bound.

``rng`` may be None (a fresh ``np.random.default_rng()``), an int seed (``default_rng(seed)``), an
``np.random.Generator``, or a legacy ``np.random.RandomState``, which draws exactly as the course code
does, layer by layer, W only (no draw for b)::

    W = rng.randn(n_l, n_prev) * np.sqrt(2. / n_prev)
"""
from __future__ import annotations

import numpy as np

from . import _validation as V

__all__ = ["INIT_METHODS", "initialize_parameters", "init_std"]

INIT_METHODS = (
    "zeros",
    "random",
    "he",
    "lecun",
    "glorot",
    "xavier",
    "random_uniform",
    "he_uniform",
    "lecun_uniform",
    "glorot_uniform",
    "xavier_uniform",
)

_ALIASES = {"xavier": "glorot", "xavier_uniform": "glorot_uniform"}
_RANDOM_DEFAULT_SCALE = 0.01


def _check_method(method) -> str:
    m = V.check_choice(method.lower() if isinstance(method, str) else method, INIT_METHODS, "init method")
    return _ALIASES.get(m, m)


def _base_std(method: str, n_in: int, n_out: int) -> float:
    """std of the Gaussian methods with gain 1 (method already de-aliased, not random/zeros)."""
    if method == "he":
        return np.sqrt(2.0 / n_in)
    if method == "lecun":
        return np.sqrt(1.0 / n_in)
    return np.sqrt(2.0 / (n_in + n_out))  # glorot


def _bound(method: str, n_in: int, n_out: int) -> float:
    """Half-width a of U(-a, a) for the uniform fan methods with gain 1."""
    if method == "he_uniform":
        return np.sqrt(6.0 / n_in)
    if method == "lecun_uniform":
        return np.sqrt(3.0 / n_in)
    return np.sqrt(6.0 / (n_in + n_out))  # glorot_uniform


def init_std(method: str, n_in: int, n_out: int, scale=None) -> float:
    """Standard deviation of the entries of W for a layer with fan-in n_in and fan-out n_out.

    For uniform methods this is the std of U(-a, a), i.e. a / sqrt(3); for "zeros" it is 0.
    ``scale`` has the same meaning as in ``initialize_parameters``.
    """
    m = _check_method(method)
    V.check_layer_dims([n_in, n_out], "[n_in, n_out]")
    s = None if scale is None else V.check_nonneg(scale, "scale")
    if m == "zeros":
        return 0.0
    if m in ("random", "random_uniform"):
        a = _RANDOM_DEFAULT_SCALE if s is None else s
        return float(a if m == "random" else a / np.sqrt(3.0))
    gain = 1.0 if s is None else s
    if m.endswith("_uniform"):
        return float(gain * _bound(m, n_in, n_out) / np.sqrt(3.0))
    return float(gain * _base_std(m, n_in, n_out))


def _draw_W(gen, method: str, n_l: int, n_prev: int, scale) -> np.ndarray:
    """One layer's W, (n_l, n_prev)."""
    if method == "zeros":
        return np.zeros((n_l, n_prev))
    if method in ("random", "random_uniform"):
        a = _RANDOM_DEFAULT_SCALE if scale is None else scale
        if method == "random_uniform":
            return gen.uniform(-a, a, size=(n_l, n_prev))
        return _randn(gen, n_l, n_prev) * a
    if method.endswith("_uniform"):
        a = _bound(method, n_prev, n_l)  # fan-in n_prev, fan-out n_l
        if scale is not None:
            a = a * scale
        return gen.uniform(-a, a, size=(n_l, n_prev))
    std = _base_std(method, n_prev, n_l)
    W = _randn(gen, n_l, n_prev) * std  # the course line, bit for bit
    if scale is not None:
        W = W * scale
    return W


def _randn(gen, n_l: int, n_prev: int) -> np.ndarray:
    if isinstance(gen, np.random.RandomState):
        return gen.randn(n_l, n_prev)
    return gen.standard_normal((n_l, n_prev))


def initialize_parameters(layer_dims, method: str = "he", rng=None, scale=None) -> dict:
    """{"W1": (n1, n0), "b1": (n1, 1), ..., "WL", "bL"} float64, biases zero.

    Raises ValueError for an unknown method, fewer than 2 layers, a size < 1, or a negative / non-finite
    scale; TypeError for non-integer sizes, a non-numeric scale, or an rng of another type.
    """
    m = _check_method(method)
    dims = V.check_layer_dims(layer_dims)
    s = None if scale is None else V.check_nonneg(scale, "scale")
    gen = V.as_generator(rng, legacy=True)  # validated even for "zeros", which draws nothing
    parameters = {}
    for l in range(1, len(dims)):
        parameters[f"W{l}"] = np.ascontiguousarray(_draw_W(gen, m, dims[l], dims[l - 1], s), dtype=np.float64)
        parameters[f"b{l}"] = np.zeros((dims[l], 1))
    return parameters
