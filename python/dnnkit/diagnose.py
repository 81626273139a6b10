"""Diagnostics from the seeds: bias/variance with the basic recipe, and vanishing/exploding signals.

- ``bias_variance(train_error, dev_error, bayes_error=0.0)``: the seeds' four cases, judged relative to
  the Bayes (optimal) error, with the basic recipe's next steps.
- ``propagation(...)``: forward a batch through a deep net and backpropagate a unit gradient, recording
  the per-layer activation and gradient scales (the seeds' deep-linear 1.5^(L-1) / 0.5^(L-1) example,
  and He / LeCun / Glorot initialization keeping the scale near 1).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from . import _validation as V
from .init import initialize_parameters  # the one source of the init formulas

__all__ = ["Diagnosis", "bias_variance", "PropagationReport", "propagation", "GradientNormsReport", "gradient_norms",
           "HIGH_BIAS_RECIPE", "HIGH_VARIANCE_RECIPE"]


# --------------------------------------------------------------------------------------------------
# bias / variance
# --------------------------------------------------------------------------------------------------

HIGH_BIAS_RECIPE = (
    "try a bigger network (more hidden units or more layers)",
    "train longer (more epochs, a better optimizer or learning rate)",
    "try a different architecture",
)
HIGH_VARIANCE_RECIPE = (
    "get more training data",
    "regularize: L2 (l2=...), dropout (keep_prob < 1), data augmentation (dk.data.augment_images / "
    "augment_noise), early stopping (dk.EarlyStopping)",
    "try a different architecture",
)

DEFAULT_TOLERANCE = 0.02


@dataclass
class Diagnosis:
    """Result of ``bias_variance``. Errors are fractions (0.11 = 11%).

    avoidable_bias = train_error - bayes_error;  variance = dev_error - train_error.
    """

    train_error: float
    dev_error: float
    bayes_error: float
    avoidable_bias: float
    variance: float
    high_bias: bool
    high_variance: bool
    verdict: str
    recommendations: list = field(default_factory=list)
    tolerance: tuple = (DEFAULT_TOLERANCE, DEFAULT_TOLERANCE)
    notes: list = field(default_factory=list)

    def __str__(self) -> str:
        def pct(v):
            return f"{100 * v:.2f}%"

        tb, tv = self.tolerance
        lines = [
            f"train error {pct(self.train_error)}, dev error {pct(self.dev_error)}, "
            f"Bayes error {pct(self.bayes_error)}",
            f"  avoidable bias (train - Bayes): {pct(self.avoidable_bias):>8}  "
            f"{'HIGH' if self.high_bias else 'ok'} (high when > {pct(tb)})",
            f"  variance       (dev - train):   {pct(self.variance):>8}  "
            f"{'HIGH' if self.high_variance else 'ok'} (high when > {pct(tv)})",
            f"verdict: {self.verdict}",
        ]
        if self.recommendations:
            lines.append("next steps (the basic recipe):")
            lines += [f"  - {r}" for r in self.recommendations]
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    def _repr_html_(self) -> str:  # Jupyter
        from . import _html

        return _html.diagnosis(self)


def _error(v, name: str) -> float:
    f = V.check_real(v, name, lo=0.0)
    if f > 1:
        hint = f" (it looks like a percentage: pass {f / 100:g} for {f:g}%)" if f <= 100 else ""
        raise ValueError(f"{name} must be a fraction in [0, 1], got {v!r}{hint}")
    return f


def _last(seq, name: str) -> float:
    if V._is_real(seq):
        return seq
    try:
        vals = list(seq)
    except TypeError:
        raise TypeError(f"history.{name} must be a list of errors or a number, got {type(seq).__name__}") from None
    if not vals:
        raise ValueError(f"history.{name} is empty: train (with validation data) before diagnosing")
    v = vals[-1]
    if V._is_real(v) and math.isnan(float(v)):
        why = ("fit had no validation data: pass validation=(X_dev, Y_dev)" if name == "dev_error" else
               "a regression net (mse) has no error rate, or the last reported epoch was interrupted")
        raise ValueError(f"history.{name} is NaN in its last row: {why}")
    return v


def _from_history(h):
    """(train_error, dev_error) from a History-like object: attributes or keys train_error/dev_error."""
    if isinstance(h, Mapping):
        if "train_error" in h and "dev_error" in h:
            return _last(h["train_error"], "train_error"), _last(h["dev_error"], "dev_error")
        return None
    if hasattr(h, "train_error") and hasattr(h, "dev_error"):
        return _last(h.train_error, "train_error"), _last(h.dev_error, "dev_error")
    return None


def bias_variance(train_error, dev_error=None, bayes_error: float = 0.0, tolerance=DEFAULT_TOLERANCE) -> Diagnosis:
    """Bias/variance diagnosis from the train and dev errors, relative to the Bayes error.

    ``train_error`` and ``dev_error`` are fractions in [0, 1] (a value above 1 raises, with a hint if
    it looks like a percentage). Instead of two numbers, the first argument may be a History-like
    object with attributes (or keys) ``train_error`` and ``dev_error`` (lists: the last values are
    used), e.g. ``bias_variance(history, bayes_error=0.05)``.

    Definitions (the seeds)::

        avoidable bias = train_error - bayes_error      high bias     when  > tolerance
        variance       = dev_error - train_error        high variance when  > tolerance

    ``tolerance`` is in absolute error (fraction) units: default 0.02, i.e. a gap counts as "high" when
    it is more than 2 percentage points. A pair ``(bias_tol, variance_tol)`` sets them apart. With the
    default the seeds' table holds: 1%/11% high variance; 15%/16% high bias; 15%/30% both; 0.5%/1%
    neither; and with ``bayes_error=0.15`` the 15%/16% model is neither (it is as good as it gets).

    Returns a ``Diagnosis`` with ``verdict`` one of "high variance", "high bias",
    "high bias and high variance", "low bias and low variance", and ``recommendations`` from the
    basic recipe (bias first: fix the fit to the training set, then the variance).
    """
    if dev_error is None:
        pair = _from_history(train_error)
        if pair is None:
            raise TypeError("bias_variance needs (train_error, dev_error) numbers or a History-like first "
                            "argument with train_error and dev_error")
        train_error, dev_error = pair
    elif _from_history(train_error) is not None and not V._is_real(train_error):
        raise TypeError("pass either a History or (train_error, dev_error), not both")
    tr = _error(train_error, "train_error")
    dv = _error(dev_error, "dev_error")
    be = _error(bayes_error, "bayes_error")
    if isinstance(tolerance, (tuple, list)):
        if len(tolerance) != 2:
            raise ValueError("tolerance must be a number or a (bias_tol, variance_tol) pair")
        tb = V.check_real(tolerance[0], "tolerance[0]", 0.0, 1.0)
        tv = V.check_real(tolerance[1], "tolerance[1]", 0.0, 1.0)
    else:
        tb = tv = V.check_real(tolerance, "tolerance", 0.0, 1.0)

    bias = tr - be
    var = dv - tr
    high_bias = bias > tb
    high_var = var > tv
    if high_bias and high_var:
        verdict = "high bias and high variance"
    elif high_bias:
        verdict = "high bias"
    elif high_var:
        verdict = "high variance"
    else:
        verdict = "low bias and low variance"
    recs: list = []
    if high_bias:
        recs += list(HIGH_BIAS_RECIPE)
    if high_var:
        recs += [r for r in HIGH_VARIANCE_RECIPE if r not in recs]
    if not recs:
        recs = ["done: evaluate the chosen model once on the test set"]
    notes = []
    if bias < -tb:
        notes.append("the training error is below the Bayes error estimate: the estimate may be too high")
    if var < -tv:
        notes.append("the dev error is below the training error: check that dev comes from the same "
                     "distribution and is large enough (dk.data.check_shift)")
    return Diagnosis(tr, dv, be, bias, var, bool(high_bias), bool(high_var), verdict, recs, (tb, tv), notes)


# --------------------------------------------------------------------------------------------------
# vanishing / exploding
# --------------------------------------------------------------------------------------------------

_ACTIVATIONS = ("linear", "relu", "tanh", "sigmoid")
DEFAULT_FACTOR = 10.0


def _g(name, Z):
    if name == "linear":
        return Z
    if name == "relu":
        return np.maximum(Z, 0.0)
    if name == "tanh":
        return np.tanh(Z)
    return 1.0 / (1.0 + np.exp(-Z))


def _dg(name, Z, A):
    if name == "linear":
        return np.ones_like(Z)
    if name == "relu":
        return (Z > 0).astype(Z.dtype)
    if name == "tanh":
        return 1.0 - A * A
    return A * (1.0 - A)


def _rms(a: np.ndarray) -> float:
    """Root mean square, robust to huge values (scaled by max |a| first)."""
    mx = float(np.max(np.abs(a))) if a.size else 0.0
    if mx == 0.0 or not math.isfinite(mx):
        return mx
    return mx * float(np.sqrt(np.mean((a / mx) ** 2)))


@dataclass
class PropagationReport:
    """Per-layer scales of one forward/backward pass (layers 0..L; layer 0 is the input x).

    activation_scale[l] = RMS(A[l]), l = 0..L (length L+1)
    gradient_scale[l-1] = RMS(dW[l]), l = 1..L (length L)
    dA_scale[l]         = RMS(dA[l]), l = 0..L (length L+1; dA[L] is the unit upstream gradient)
    ratio        = activation_scale[L-1] / activation_scale[0]: the seeds' quantity, the signal that
                   reaches the last layer, (W[L-1] ... W[1]) x vs x; c^(L-1) for W[l] = c I, linear
    output_ratio = activation_scale[L] / activation_scale[0] (c^L in that example)
    gradient_ratio = dA_scale[0] / dA_scale[L]: how the gradient grows/shrinks from output to input
    verdict: "exploding" if max(output_ratio, gradient_ratio) > factor, else "vanishing" if
             min(output_ratio, gradient_ratio) < 1/factor, else "stable" (factor 10 by default).
    """

    layer_dims: list
    activation: str
    init: str
    activation_scale: list
    gradient_scale: list
    dA_scale: list
    ratio: float
    output_ratio: float
    gradient_ratio: float
    verdict: str
    factor: float = DEFAULT_FACTOR

    @property
    def depth(self) -> int:
        return len(self.layer_dims) - 1

    def __str__(self) -> str:
        head = f"{'layer':>5} {'units':>6} {'RMS A[l]':>12} {'RMS dA[l]':>12} {'RMS dW[l]':>12}"
        lines = [f"propagation: layers {self.layer_dims}, activation {self.activation}, init {self.init}",
                 head, "-" * len(head)]
        for l, n in enumerate(self.layer_dims):
            dw = f"{self.gradient_scale[l - 1]:>12.4g}" if l > 0 else f"{'':>12}"
            lines.append(f"{l:>5} {n:>6} {self.activation_scale[l]:>12.4g} {self.dA_scale[l]:>12.4g} {dw}")
        lines.append(f"ratio A[L-1]/A[0] = {self.ratio:.6g}, A[L]/A[0] = {self.output_ratio:.6g}, "
                     f"dA[0]/dA[L] = {self.gradient_ratio:.6g}")
        lines.append(f"verdict: {self.verdict} (exploding above x{self.factor:g}, vanishing below "
                     f"x{1 / self.factor:g}, end to end)")
        return "\n".join(lines)

    def _repr_html_(self) -> str:  # Jupyter
        from . import _html

        return _html.propagation(self)


def _dims_from(layer_dims, depth, width) -> list:
    if layer_dims is not None:
        return V.check_layer_dims(layer_dims)
    depth = V.check_positive_int(depth, "depth", 1)
    width = V.check_positive_int(width, "width", 1)
    return [width] * (depth + 1)


def _weights(weights, dims, init, scale, gen):
    L = len(dims) - 1
    if weights is None:
        if not isinstance(init, str):
            raise TypeError(f"init must be a method name, got {init!r}")
        params = initialize_parameters(dims, init, gen, scale)
        return [params[f"W{l}"] for l in range(1, L + 1)], init
    if V._is_real(weights):
        c = V.check_real(weights, "weights")
        return [c * np.eye(dims[l], dims[l - 1]) for l in range(1, L + 1)], f"W[l] = {c:g} * I"
    if isinstance(weights, Mapping):
        try:
            Ws = [weights[f"W{l}"] for l in range(1, L + 1)]
        except KeyError as exc:
            raise ValueError(f"weights dict is missing {exc.args[0]!r}") from None
    elif isinstance(weights, (list, tuple)):
        Ws = list(weights)
        if len(Ws) != L:
            raise ValueError(f"weights has {len(Ws)} matrices but layer_dims {dims} need {L}")
    else:
        raise TypeError("weights must be None, a number c (W[l] = c I), a list of matrices or a "
                        "{'W1': ...} dict")
    out = []
    for l, W in enumerate(Ws, start=1):
        W = V.as_array(W, f"W{l}").astype(np.float64)
        if W.shape != (dims[l], dims[l - 1]):
            raise ValueError(f"W{l} has shape {W.shape}, expected {(dims[l], dims[l - 1])}")
        out.append(W)
    return out, "given"


def propagation(layer_dims=None, depth: int = 10, width: int = 2, activation: str = "linear", init: str = "he",
                weights=None, m: int = 1000, seed=0, x=None, scale=None,
                factor: float = DEFAULT_FACTOR, upstream: str = "signs") -> PropagationReport:
    """Forward a batch through a deep net (biases 0) and backpropagate a unit gradient; report scales.

    ``propagation(net, X)``: the same report for YOUR ``dnnkit.Network`` on your data ``X`` (n_x, m): its own
    hidden and output activations, weights and biases, a unit upstream gradient (``upstream``) at its output,
    the course's backward formulas through every layer; ``report.activation`` names the activations and
    ``report.init`` is "the network's parameters".

    Network: ``layer_dims`` (n[0], ..., n[L]), or ``depth`` L layers of ``width`` units on a
    ``width``-dimensional input (the seeds' example: width 2, depth 10). The same ``activation``
    (linear, relu, tanh, sigmoid) is used at every layer, the output layer included, biases are 0.

    Weights: ``weights=None`` initializes with ``dnnkit.init.initialize_parameters(layer_dims, init,
    rng, scale)`` (init "he", "lecun", "glorot"/"xavier", "random" with ``scale`` as std (0.01 by
    default), the *_uniform variants...); a number c gives ``W[l] = c I`` (``np.eye(n[l], n[l-1])``);
    a list of matrices or a {"W1": ...} dict is used as is.

    Input: ``x`` (n[0], m) if given, else an (n[0], m) standard normal batch drawn from ``seed``.

    Backward: a unit upstream gradient ``dA[L]`` (n[L], m) with every entry +-1, i.e. RMS exactly 1:
    ``upstream="signs"`` (default) draws random signs from ``seed`` (like a loss gradient, it does not
    correlate with the activations); ``upstream="ones"`` uses all ones (the cost J = (1/m) sum of all
    outputs; through ReLU masks it then picks up a component along the activations and grows with
    depth even under He init). Then the course's formulas ``dZ = dA * g'(Z)``,
    ``dW[l] = (1/m) dZ[l] A[l-1]^T``, ``dA[l-1] = W[l]^T dZ[l]``. For W = c I and a linear net both
    choices give RMS(dA[l]) = c^(L-l) exactly.

    ``report.ratio`` is the seeds' statement ``y_hat = W[L] (c I)^(L-1) x ~ c^(L-1) x``: the RMS of
    the input to the last layer, A[L-1], over the RMS of x, exactly c^(L-1) for W = c I (1.5^9 and
    0.5^9 for L = 10); ``report.output_ratio`` is RMS(A[L]) / RMS(x) = c^L including the last layer.
    See ``PropagationReport`` for the verdict thresholds.
    """
    from .network import Network

    if isinstance(layer_dims, Network):
        X = x if x is not None else (None if isinstance(depth, (int, np.integer)) else depth)
        return _propagation_of(layer_dims, X, seed, factor, upstream)
    dims = _dims_from(layer_dims, depth, width)
    L = len(dims) - 1
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {_ACTIVATIONS}, got {activation!r}")
    factor = V.check_real(factor, "factor", 1.0, lo_open=True)
    gen = V.as_generator(seed, "seed")
    if x is None:
        m = V.check_positive_int(m, "m", 1)
        A0 = gen.standard_normal((dims[0], m))  # x first, then the weights, from one stream
    else:
        A0 = V.as_array(x, "x").astype(np.float64)
        if A0.shape[0] != dims[0]:
            raise ValueError(f"x has {A0.shape[0]} rows but the input layer has {dims[0]} units")
        m = A0.shape[1]
    Ws, init_name = _weights(weights, dims, init, scale, gen)
    if upstream == "signs":
        dA_L = np.where(gen.random((dims[-1], m)) < 0.5, -1.0, 1.0)
    elif upstream == "ones":
        dA_L = np.ones((dims[-1], m))
    else:
        raise ValueError(f"upstream must be 'signs' or 'ones', got {upstream!r}")

    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        As, Zs = [A0], [None]
        for W in Ws:
            Z = W @ As[-1]
            Zs.append(Z)
            As.append(_g(activation, Z))
        dA = dA_L
        dA_scale = [0.0] * (L + 1)
        dW_scale = [0.0] * L
        dA_scale[L] = _rms(dA)
        for l in range(L, 0, -1):
            dZ = dA * _dg(activation, Zs[l], As[l])
            dW_scale[l - 1] = _rms(dZ @ As[l - 1].T / m)
            dA = Ws[l - 1].T @ dZ
            dA_scale[l - 1] = _rms(dA)
        act_scale = [_rms(A) for A in As]

    return _scales_report(dims, activation, init_name, act_scale, dW_scale, dA_scale, factor)


def _scales_report(dims, activation, init_name, act_scale, dW_scale, dA_scale, factor) -> PropagationReport:
    L = len(dims) - 1

    def ratio(a, b):
        if b == 0:
            return math.inf if a > 0 else 1.0
        return a / b

    r_prev = ratio(act_scale[L - 1], act_scale[0])
    r_out = ratio(act_scale[L], act_scale[0])
    r_grad = ratio(dA_scale[0], dA_scale[L])
    ends = (r_out, r_grad)
    if any(math.isnan(r) or r > factor for r in ends):  # NaN comes from inf - inf: overflow
        verdict = "exploding"
    elif any(r < 1.0 / factor for r in ends):
        verdict = "vanishing"
    else:
        verdict = "stable"
    return PropagationReport(list(dims), activation, init_name, act_scale, dW_scale, dA_scale, r_prev, r_out,
                             r_grad, verdict, factor)


def _propagation_of(net, X, seed, factor, upstream) -> PropagationReport:
    """propagation(net, X): the user's Network (its activations, weights AND biases) on their data X."""
    from . import reference as ref

    dims = [int(d) for d in net.layer_dims]
    L = len(dims) - 1
    if X is None:
        raise TypeError("propagation(net, X): X (the data, examples as columns) is required")
    A0 = V.as_array(X, "X", np.float64, rows=dims[0])
    m = A0.shape[1]
    factor = V.check_real(factor, "factor", 1.0, lo_open=True)
    gen = V.as_generator(seed, "seed")
    if upstream == "signs":
        dA = np.where(gen.random((dims[-1], m)) < 0.5, -1.0, 1.0)
    elif upstream == "ones":
        dA = np.ones((dims[-1], m))
    else:
        raise ValueError(f"upstream must be 'signs' or 'ones', got {upstream!r}")
    acts = [net.hidden] * (L - 1) + [net.output]
    p = {k: np.asarray(v, dtype=np.float64) for k, v in net.params.items()}
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        As, Zs = [A0], [None]
        for l in range(1, L + 1):
            Z = p[f"W{l}"] @ As[-1] + p[f"b{l}"]
            Zs.append(Z)
            As.append(ref._activation(acts[l - 1], Z, net.alpha))
        dA_scale = [0.0] * (L + 1)
        dW_scale = [0.0] * L
        dA_scale[L] = _rms(dA)
        for l in range(L, 0, -1):
            dZ = ref.activation_backward(dA, Zs[l], acts[l - 1], net.alpha)
            dW_scale[l - 1] = _rms(dZ @ As[l - 1].T / m)
            dA = p[f"W{l}"].T @ dZ
            dA_scale[l - 1] = _rms(dA)
        act_scale = [_rms(A) for A in As]
    name = net.hidden if net.output == net.hidden else f"{net.hidden} (output {net.output})"
    return _scales_report(dims, name, "the network's parameters", act_scale, dW_scale, dA_scale, factor)


# --------------------------------------------------------------------------------------------------
# gradient norms recorded by fit
# --------------------------------------------------------------------------------------------------

@dataclass
class GradientNormsReport:
    """Where the gradients vanish or explode during training, from ``History.grad_norms`` (per reported epoch,
    per layer l = 1..L: the mean over the epoch's steps of ||dW[l]||_F, recorded by ``fit``).

    ``first`` / ``last``: the norms per layer at the first and last reported epochs; ``ratios`` per epoch =
    norm of layer 1 / norm of layer L, the gradient that reaches layer 1 relative to the output layer's;
    ``ratio`` the most extreme of them (farthest from 1 on a log scale), at ``worst_epoch``; ``growth`` per
    layer = last / first. verdict: "exploding" if any norm is not finite, ratio > factor or some layer grew by
    more than factor^2 over training; "vanishing" if ratio < 1/factor; else "stable". ``vanishing_layers``:
    layers whose norm at the worst epoch is below the largest / factor; ``exploding_layers``: those above
    factor * the smallest when the verdict is "exploding"."""

    epochs: list
    norms: list
    first: list
    last: list
    ratio: float
    growth: list
    verdict: str
    vanishing_layers: list
    exploding_layers: list
    factor: float = DEFAULT_FACTOR
    ratios: list = field(default_factory=list)
    worst_epoch: int = 0

    def __str__(self) -> str:
        head = f"{'layer':>5} {'||dW|| first':>13} {'||dW|| last':>13} {'last/output':>12} {'growth':>9}"
        lines = [f"gradient norms over {len(self.epochs)} reported epochs (History.grad_norms)", head,
                 "-" * len(head)]
        L = len(self.last)
        for l in range(L):
            rel = self.last[l] / self.last[-1] if self.last[-1] else math.inf
            lines.append(f"{l + 1:>5} {self.first[l]:>13.4g} {self.last[l]:>13.4g} {rel:>12.4g} "
                         f"{self.growth[l]:>9.4g}")
        where = ""
        if self.verdict == "vanishing" and self.vanishing_layers:
            where = f": layers {self.vanishing_layers} get < 1/{self.factor:g} of the largest gradient"
        elif self.verdict == "exploding" and self.exploding_layers:
            where = f": layers {self.exploding_layers}"
        lines.append(f"verdict: {self.verdict}{where} (layer 1 / layer {L} = {self.ratio:.4g} at epoch "
                     f"{self.worst_epoch}; {self.ratios[0]:.4g} at the first reported epoch, {self.ratios[-1]:.4g} "
                     f"at the last)")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"epochs": list(self.epochs), "norms": [list(r) for r in self.norms], "first": list(self.first),
                "last": list(self.last), "ratio": self.ratio, "growth": list(self.growth), "verdict": self.verdict,
                "vanishing_layers": list(self.vanishing_layers), "exploding_layers": list(self.exploding_layers),
                "factor": self.factor, "ratios": list(self.ratios), "worst_epoch": self.worst_epoch}


def gradient_norms(history, factor: float = DEFAULT_FACTOR) -> GradientNormsReport:
    """Diagnose vanishing / exploding gradients from a training ``History`` (``fit`` records per-layer
    ||dW[l]||_F every reported epoch); see :class:`GradientNormsReport`."""
    factor = V.check_real(factor, "factor", 1.0, lo_open=True)
    rows = getattr(history, "grad_norms", None) if not isinstance(history, Mapping) else history.get("grad_norms")
    if rows is None:
        raise TypeError("gradient_norms needs a History (or a dict) with grad_norms")
    epochs = list(getattr(history, "epoch", None) or (history.get("epoch") if isinstance(history, Mapping) else [])
                  or range(1, len(rows) + 1))
    G = np.asarray([list(r) for r in rows], dtype=np.float64)
    if G.ndim != 2 or G.shape[0] == 0 or G.shape[1] == 0:
        raise ValueError("the history has no grad_norms (train first)")
    keep = ~np.all(np.isnan(G), axis=1)     # an interrupted epoch's row is NaN
    G = G[keep]
    epochs = [e for e, k in zip(epochs, keep) if k]
    if G.shape[0] == 0:
        raise ValueError("every grad_norms row is NaN (training was interrupted before an epoch finished)")
    first, last = G[0], G[-1]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        ratios = np.where(G[:, -1] > 0, G[:, 0] / G[:, -1], np.inf)
        growth = np.where(first > 0, last / first, np.inf)
        score = np.where(np.isfinite(ratios) & (ratios > 0), np.abs(np.log(np.where(ratios > 0, ratios, 1.0))),
                         np.inf)
    w = int(np.argmax(score))
    ratio = float(ratios[w])
    row = G[w]
    finite = bool(np.all(np.isfinite(G)))
    vanishing = [int(l + 1) for l in np.flatnonzero(row < np.nanmax(row) / factor)] if finite else []
    if not finite or ratio > factor or np.any(growth > factor ** 2):
        verdict = "exploding"
        lo = np.nanmin(row) if finite else 0.0
        exploding = [int(l + 1) for l in range(row.size) if not np.isfinite(row[l]) or row[l] > factor * lo
                     or growth[l] > factor ** 2]
    elif ratio < 1.0 / factor:
        verdict, exploding = "vanishing", []
    else:
        verdict, exploding = "stable", []
    return GradientNormsReport(epochs, G.tolist(), first.tolist(), last.tolist(), ratio, growth.tolist(), verdict,
                               vanishing, exploding, factor, ratios.tolist(), int(epochs[w]))
