"""`Network`: a fully-connected net on ONE contiguous parameter buffer, computed by the native core."""
from __future__ import annotations

import copy
import threading
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _core
from . import _validation as V
from ._params import layer_slices, n_params, param_views
from .init import initialize_parameters

if TYPE_CHECKING:  # annotations only (training imports network)
    from .training import History

__all__ = ["Network", "default_init", "dropout_mask", "error_rate"]


def default_init(hidden: str) -> str:
    """He for ReLU-family hidden layers, Glorot (Xavier) otherwise — the seeds' advice."""
    return "he" if hidden in ("relu", "leaky_relu") else "glorot"


def dropout_mask(shape, keep_prob: float, seed: int, step: int = 0, layer: int = 1) -> np.ndarray:
    """The 0/1 mask the native passes draw for one layer: keyed by (seed, step, layer, unit, example),
    so it does not depend on the thread count and can be given to ``dnnkit.reference`` to compare."""
    if not V._is_seq(shape) or len(shape) != 2:
        raise ValueError(f"shape must be (n_units, m), got {shape!r}")
    n, m = (V.check_positive_int(s, "shape entries", maximum=V.INT32_MAX) for s in shape)
    kp = V.normalize_keep_prob(keep_prob, 2)[1]
    layer = V.check_step(layer, "layer")
    return _core.dropout_mask(n, m, kp, V.check_seed(seed), V.check_step(step), layer).astype(np.float64)


def error_rate(AL: np.ndarray, Y: np.ndarray, loss: str) -> float:
    """The error metric of dnnkit (History's train_error / dev_error, ``evaluate``'s "error"): bce: the
    fraction of wrong output entries at threshold 0.5; ce: the fraction of wrong argmax classes; mse: NaN
    (regression). The native trainer's running error (``Trainer::errors`` in cpp/dnnkit/train.hpp) is its
    twin, tested equal in tests/test_training.py."""
    if loss == "bce":
        return float(np.mean((AL > 0.5) != (Y > 0.5)))
    if loss == "ce":
        return float(np.mean(np.argmax(AL, axis=0) != np.argmax(Y, axis=0)))
    return float("nan")


def _fresh_seed() -> int:
    return int(np.random.SeedSequence().generate_state(1, dtype=np.uint64)[0])


class Network:
    """A fully-connected network ``layer_dims = [n_x, n_1, ..., n_L]``.

    ``theta`` is one contiguous buffer (W1, b1, W2, b2, ... each in C order); ``params["W1"]`` etc. are
    views into it, and ``grads["dW1"]`` etc. are views into one flat gradient buffer written by
    :meth:`backward`. Examples are columns: ``X`` is ``(n_x, m)``, ``Y`` is ``(n_y, m)``.

    hidden: relu | leaky_relu | tanh | sigmoid | linear. output: sigmoid | softmax | linear.
    loss: bce (sigmoid), ce (softmax), mse (linear or sigmoid); defaults to the output's natural loss.
    """

    normalizer: Any  # a fitted dnnkit.data.Standardizer or None; saved with the model
    training_config: dict | None  # set by fit (the arguments and outcome) and by load; absent before

    def __init__(self, layer_dims, hidden: str = "relu", output: str = "sigmoid", loss: str | None = None,
                 dtype="float64", params: dict | None = None, alpha: float = 0.01):
        dims = V.check_layer_dims(layer_dims)
        V.check_choice(hidden, V.HIDDEN_ACTIVATIONS, "hidden activation")
        V.check_choice(output, V.OUTPUT_ACTIVATIONS, "output activation")
        loss = V.DEFAULT_LOSS[output] if loss is None else V.check_choice(loss, V.LOSSES, "loss")
        if (output, loss) not in V.VALID_PAIRS:
            raise ValueError(f"loss {loss!r} does not go with a {output} output; valid pairs: "
                             + ", ".join(f"{o}+{lo}" for o, lo in sorted(V.VALID_PAIRS)))
        alpha = V.check_nonneg(alpha, "alpha")
        self.layer_dims = tuple(dims)
        self.hidden, self.output, self.loss, self.alpha = hidden, output, loss, alpha
        self.dtype = V.check_dtype(dtype)
        core_cls = _core.MLP64 if self.dtype == np.float64 else _core.MLP32
        self._core = core_cls(list(dims), hidden, output, loss, alpha)
        # The native object serialises its own calls, but forward() is two native calls (the pass, then the
        # cache it left in the shared workspace): this lock keeps them together when several Python threads
        # use one network, so a cache never mixes in another thread's pass.
        self._lock = threading.RLock()
        self._theta = np.zeros(n_params(dims), dtype=self.dtype)
        self._grad = np.zeros_like(self._theta)
        self.params = param_views(self._theta, dims)
        self.grads = param_views(self._grad, dims, prefix="d")
        self.normalizer = None  # set by the toolkit (dnnkit.data.Standardizer) and saved with the model
        if params is not None:
            self.set_params(params)

    # ---------------------------------------------------------------- parameters
    @property
    def L(self) -> int:
        return len(self.layer_dims) - 1

    @property
    def n_params(self) -> int:
        return self._theta.size

    @property
    def theta(self) -> np.ndarray:
        """The flat parameter buffer (writes go straight into the network)."""
        return self._theta

    @theta.setter
    def theta(self, value) -> None:
        v = V.as_array(value, "theta", self.dtype, ndim=1)
        if v.size != self._theta.size:
            raise ValueError(f"theta has {v.size} entries, this network has {self._theta.size}")
        self._theta[...] = v  # in place: the dict views stay valid

    @property
    def grad_vector(self) -> np.ndarray:
        """The flat gradient buffer written by :meth:`backward` (``grads`` are views into it)."""
        return self._grad

    def set_params(self, params: dict) -> "Network":
        """Copy a ``{"W1": ..., "b1": ...}`` dict into the buffer (all checked before anything is written)."""
        if not isinstance(params, dict):
            raise TypeError(f"params must be a dict of arrays, got {type(params).__name__}")
        new = np.empty_like(self._theta)
        slices = layer_slices(self.layer_dims)
        V.check_param_keys(params, list(slices), "params", self.layer_dims)  # missing or extra (typo) keys
        for name, (sl, shape) in slices.items():
            a = np.asarray(params[name])
            if name.startswith("b") and a.ndim == 1:
                a = a.reshape(-1, 1)
            if a.shape != shape:
                raise ValueError(f"params[{name!r}] has shape {a.shape}, expected {shape}")
            new[sl] = V.as_array(a, f"params[{name!r}]", self.dtype).reshape(-1)
        self._theta[...] = new
        return self

    def get_params(self) -> dict:
        """A copy of the parameters as a dict."""
        return {k: v.copy() for k, v in self.params.items()}

    def initialize(self, method: str | None = None, rng=None, scale=None) -> "Network":
        """Fill the parameters with ``dnnkit.initialize_parameters`` (default: He for ReLU, else Glorot)."""
        method = default_init(self.hidden) if method is None else method
        return self.set_params(initialize_parameters(list(self.layer_dims), method=method, rng=rng, scale=scale))

    # ---------------------------------------------------------------- inputs
    def _x(self, X) -> np.ndarray:
        return V.as_array(X, "X", self.dtype, rows=self.layer_dims[0])

    # ---------------------------------------------------------------- the trainer's interface
    # dnnkit.training.fit uses these two and the public attributes (layer_dims, hidden, output, loss, alpha,
    # dtype, theta, L), nothing else of the network.
    def check_data(self, X, Y, x_name: str = "X", y_name: str = "Y") -> tuple[np.ndarray, np.ndarray]:
        """(X, Y) validated for this network: C-contiguous arrays of its dtype (copies where converted), the
        shapes (n_x, m) and (n_y, m), finite, labels valid for the loss."""
        X = V.as_array(X, x_name, self.dtype, rows=self.layer_dims[0])
        Y = V.as_array(Y, y_name, self.dtype, rows=self.layer_dims[-1], cols=X.shape[1])
        V.check_labels(Y, self.loss)
        return X, Y

    def cost_and_error(self, X: np.ndarray, Y: np.ndarray, l2: float = 0.0, l1: float = 0.0) -> tuple:
        """``(J, error_rate, AL)`` over (X, Y) with the current parameters, no dropout, for arrays returned by
        :meth:`check_data` (not checked again: the trainer calls this every reported epoch)."""
        with self._lock:  # two native passes on the shared workspace: see forward
            J = float(self._core.cost(self._theta, X, Y, [], 0, 0, [], l2, l1))
            AL = self._core.forward(self._theta, X, [], 0, 0, [])
        return J, error_rate(AL, Y, self.loss), AL

    def _dropout(self, keep_prob, seed, masks, step, m):
        keep = V.normalize_keep_prob(keep_prob, self.L)
        step = V.check_step(step)
        mlist = []
        if masks is not None:
            mlist = V.normalize_masks(masks, keep, self.layer_dims, m, self.dtype)
            missing = [l for l in range(self.L) if keep[l] < 1.0 and mlist[l] is None]
            if missing and seed is None:
                raise ValueError(f"keep_prob < 1 on layers {missing} but no mask for them and no seed")
        if seed is None:  # a fresh seed only matters (and costs entropy) when some layer drops units
            seed = _fresh_seed() if any(k < 1.0 for k in keep) else 0
        return keep, V.check_seed(seed), step, mlist

    # ---------------------------------------------------------------- passes
    def forward(self, X, keep_prob=1.0, seed=None, masks=None, step=0) -> tuple[np.ndarray, dict]:
        """Returns ``(AL, cache)``; cache holds ``A0`` (X), ``Z1``, ``A1``, ..., ``D{l}`` for dropped layers,
        and ``seed``/``step``/``keep_prob`` so the same masks can be regenerated."""
        X = self._x(X)
        m = X.shape[1]
        keep, seed, step, mlist = self._dropout(keep_prob, seed, masks, step, m)
        with self._lock:
            AL = self._core.forward(self._theta, X, keep, seed, step, mlist)
            cache = self._core.cache()
        cache.setdefault("A0", X)
        for l in range(self.L):
            if keep[l] < 1.0:
                D = mlist[l] if mlist and mlist[l] is not None else \
                    _core.dropout_mask(self.layer_dims[l], m, keep[l], seed, step, l).astype(self.dtype)
                cache[f"D{l}"] = D
        cache.update(seed=seed, step=step, keep_prob=keep)
        return AL, cache

    def cost(self, X, Y, l2=0.0, l1=0.0, keep_prob=1.0, seed=None, masks=None, step=0) -> float:
        """J = (1/m) sum(loss) + (l2/(2m)) sum ||W||_F^2 + (l1/(2m)) sum |W| (no dropout unless asked)."""
        X, Y = self.check_data(X, Y)
        l2, l1 = V.check_nonneg(l2, "l2"), V.check_nonneg(l1, "l1")
        keep, seed, step, mlist = self._dropout(keep_prob, seed, masks, step, X.shape[1])
        with self._lock:
            return float(self._core.cost(self._theta, X, Y, keep, seed, step, mlist, l2, l1))

    def backward(self, X, Y, l2=0.0, l1=0.0, keep_prob=1.0, seed=None, masks=None, step=0) -> dict:
        """Forward + backward; fills and returns ``grads`` (views of one flat buffer). The cost of the same
        pass is kept in ``last_cost``. With dropout, the same ``seed``/``step`` reproduce the same masks."""
        X, Y = self.check_data(X, Y)
        l2, l1 = V.check_nonneg(l2, "l2"), V.check_nonneg(l1, "l1")
        keep, seed, step, mlist = self._dropout(keep_prob, seed, masks, step, X.shape[1])
        with self._lock:
            self.last_cost = float(self._core.backward(self._theta, X, Y, keep, seed, step, mlist, l2, l1,
                                                       self._grad))
        return self.grads

    def predict_proba(self, X) -> np.ndarray:
        """The output activations AL (no dropout)."""
        X = self._x(X)
        with self._lock:
            return self._core.forward(self._theta, X, [], 0, 0, [])

    def predict(self, X) -> np.ndarray:
        """Classification: sigmoid+bce -> 0/1 labels (n_y, m); softmax -> class indices (m,). Regression (mse,
        linear or sigmoid output): the outputs AL. (``dnnkit.reference.predict`` with the same loss agrees.)"""
        AL = self.predict_proba(X)
        if self.output == "sigmoid" and self.loss == "bce":
            return (AL > 0.5).astype(np.int64)
        if self.output == "softmax":
            return np.argmax(AL, axis=0)
        return AL

    def evaluate(self, X, Y, l2=0.0, l1=0.0) -> dict:
        """``{"cost", "error", "accuracy"}`` (classification) or ``{"cost", "mse"}`` (regression)."""
        X, Y = self.check_data(X, Y)
        J, err, AL = self.cost_and_error(X, Y, V.check_nonneg(l2, "l2"), V.check_nonneg(l1, "l1"))
        if self.loss == "mse":
            return {"cost": J, "mse": float(np.mean(np.sum((AL - Y) ** 2, axis=0)))}
        return {"cost": J, "error": err, "accuracy": 1.0 - err}

    # ---------------------------------------------------------------- training and persistence
    # training.py and io.py import this module (they take a Network); these three methods are the one place
    # the cycle is broken, by importing them on first use.
    def fit(self, X, Y, **kwargs) -> History:
        """Train in place; see :func:`dnnkit.training.fit` for the options. Returns a ``History``."""
        from .training import fit

        return fit(self, X, Y, **kwargs)

    def save(self, path) -> None:
        """Write architecture, parameters, normalizer and training config (see :mod:`dnnkit.io`); atomic."""
        from .io import save

        save(self, path)

    @classmethod
    def load(cls, path) -> "Network":
        """Read a file written by :meth:`save`; raises ``dnnkit.io.ModelFileError`` on a bad file."""
        from .io import load

        return load(path)

    # ---------------------------------------------------------------- copy / pickle
    def __getstate__(self) -> dict:
        # the native workspace is rebuilt on unpickling; everything else is plain data
        state = {k: v for k, v in self.__dict__.items() if k not in ("_core", "_lock", "params", "grads")}
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()
        core_cls = _core.MLP64 if self.dtype == np.float64 else _core.MLP32
        self._core = core_cls(list(self.layer_dims), self.hidden, self.output, self.loss, self.alpha)
        self.params = param_views(self._theta, self.layer_dims)
        self.grads = param_views(self._grad, self.layer_dims, prefix="d")

    def copy(self) -> "Network":
        """An independent copy (parameters, normalizer, configuration)."""
        return copy.deepcopy(self)

    def _repr_html_(self) -> str:  # Jupyter: architecture, parameter count, dtype, normalizer
        from . import _html

        return _html.network(self)

    def __repr__(self) -> str:
        return (f"Network({list(self.layer_dims)}, hidden={self.hidden!r}, output={self.output!r}, "
                f"loss={self.loss!r}, dtype={self.dtype.name!r}, n_params={self.n_params})")

