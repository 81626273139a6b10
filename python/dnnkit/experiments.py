"""The seeds' experiments, end to end, on the native engine (``Network.fit`` and ``dk.gradcheck``).

Each function trains / checks, returns a small results object whose ``str()`` is the printed table, and,
given ``out_dir``, writes its figures there (matplotlib needed only then; ``results.figures`` lists them).

- :func:`initialization`       circles, [2, 10, 5, 1], lr 0.01, 15,000 full-batch gd iterations:
                               zeros (stays at 50 %: symmetry is never broken) vs random x10 vs He.
- :func:`regularization`       the football data (seed 0), [2, 20, 3, 1], lr 0.3, 30,000 iterations:
                               none vs L2 (lambda 0.7) vs dropout (keep_prob 0.86), with the bias/variance
                               verdict of each model.
- :func:`gradient_checking`    the course's 3-layer net with two planted backprop bugs (dW2 x2, db1 with
                               4/m): caught, both localized by component, the fixed backprop passes.
- :func:`vanishing_exploding`  the deep-linear example (W[l] = 1.5 I / 0.5 I: the signal scales as
                               1.5^(L-1) / 0.5^(L-1)) and He / LeCun / Glorot init keeping a deep net's
                               scale near 1 where small / large random init vanish / explode.

``quick=True`` runs shorter versions (fewer iterations) for tests and ``dnnkit demo --quick``; the claims
above hold for the full versions (and, for the quick ones, as tested in tests/test_experiments.py).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np

__all__ = ["initialization", "regularization", "gradient_checking", "vanishing_exploding", "run_all",
           "ExperimentResult"]


@dataclass
class ExperimentResult:
    """``name``, ``rows`` (one dict per model/case), ``columns`` (the printed ones, in order), ``notes``
    (lines printed under the table), ``figures`` (paths written) and ``extra`` (histories, nets, reports)."""

    name: str
    title: str
    columns: list
    rows: list
    notes: list = field(default_factory=list)
    figures: list = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    def row(self, key: str) -> dict:
        """The row whose first column equals ``key``."""
        first = self.columns[0]
        for r in self.rows:
            if r[first] == key:
                return r
        raise KeyError(key)

    def table(self) -> str:
        cells = [[_fmt(r.get(c)) for c in self.columns] for r in self.rows]
        widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(self.columns)]
        text = [i == 0 or any(isinstance(r.get(c), str) for r in self.rows) for i, c in enumerate(self.columns)]
        line = lambda vals: "  ".join(v.ljust(w) if text[i] else v.rjust(w)  # noqa: E731
                                      for i, (v, w) in enumerate(zip(vals, widths))).rstrip()
        out = [line(self.columns), line(["-" * w for w in widths])] + [line(r) for r in cells]
        return "\n".join(out)

    def __str__(self) -> str:
        parts = [self.title, "=" * len(self.title), self.table()]
        parts += self.notes
        if self.figures:
            parts.append("figures: " + ", ".join(self.figures))
        return "\n".join(parts)

    def to_dict(self) -> dict:
        return {"name": self.name, "title": self.title, "columns": list(self.columns),
                "rows": [dict(r) for r in self.rows], "notes": list(self.notes), "figures": list(self.figures)}


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        a = abs(v)
        if a != 0 and (a >= 1e4 or a < 1e-3):
            return f"{v:.3e}"
        return f"{v:.4f}"
    return str(v)


def _pct(v: float) -> str:
    return f"{100 * v:.1f} %"


def _figure_paths(out_dir, names):
    if out_dir is None:
        return None
    os.makedirs(out_dir, exist_ok=True)
    return {n: os.path.join(os.fspath(out_dir), f"{n}.png") for n in names}


# ------------------------------------------------------------------------------------------- initialization

def initialization(iterations: int | None = None, learning_rate: float = 0.01, m_train: int = 300,
                   m_test: int = 100, seed: int = 1, init_seed: int = 3, quick: bool = False, out_dir=None,
                   verbose: bool = False) -> ExperimentResult:
    """Zeros vs random x10 vs He on the circles data (the course's initialization assignment).

    [2, 10, 5, 1], relu / sigmoid, full-batch gradient descent, ``iterations`` steps (15,000; 3,000 with
    ``quick``) at ``learning_rate``. Train set: ``circles(m_train, noise=0.05, seed=seed)``, test set:
    ``circles(m_test, seed=seed + 1)``. Init draws with ``np.random.RandomState(init_seed)`` as the course
    does. Expected: zeros stays at 50 % (every unit of a layer computes the same function forever), random
    x10 learns slowly from saturated sigmoids (a large initial cost), He reaches >= 95 %.
    """
    import dnnkit as dk
    from . import datasets

    iterations = (3000 if quick else 15000) if iterations is None else int(iterations)
    X, Y = datasets.circles(m_train, noise=0.05, seed=seed)
    Xt, Yt = datasets.circles(m_test, noise=0.05, seed=seed + 1)
    cases = [("zeros", "zeros", None), ("random x10", "random", 10.0), ("he", "he", None)]
    rows, hist, nets = [], {}, {}
    log_every = max(1, iterations // 150)
    for label, method, scale in cases:
        net = dk.Network([2, 10, 5, 1], hidden="relu", output="sigmoid")
        net.initialize(method, rng=np.random.RandomState(init_seed), scale=scale)
        J0 = net.cost(X, Y)                                  # the cost at initialization
        h = net.fit(X, Y, epochs=iterations, learning_rate=learning_rate, seed=0, log_every=log_every,
                    verbose=verbose)
        tr, te = net.evaluate(X, Y), net.evaluate(Xt, Yt)
        rows.append({"init": label, "initial cost": J0, "final cost": tr["cost"],
                     "train acc": tr["accuracy"], "test acc": te["accuracy"]})
        hist[label], nets[label] = h, net
    res = ExperimentResult(
        "initialization",
        f"Initialization: circles, [2, 10, 5, 1], lr {learning_rate:g}, {iterations} iterations (full-batch gd)",
        ["init", "initial cost", "final cost", "train acc", "test acc"], rows,
        extra={"histories": hist, "nets": nets, "data": (X, Y, Xt, Yt)})
    z, he = res.row("zeros"), res.row("he")
    res.notes.append(f"zeros: accuracy {_pct(z['train acc'])} — symmetry is never broken, every unit of a "
                     "layer learns the same thing")
    res.notes.append(f"random x10: initial cost {res.row('random x10')['initial cost']:.3g} — huge weights "
                     "saturate the sigmoid (confident wrong predictions); learning starts slowly")
    res.notes.append(f"he: test accuracy {_pct(he['test acc'])}")
    paths = _figure_paths(out_dir, ["init_costs", "init_boundaries"])
    if paths:
        from . import plots

        res.figures.append(plots.init_comparison(hist, rows, path=paths["init_costs"]))
        res.figures.append(plots.decision_boundaries(nets, X, Y, path=paths["init_boundaries"],
                                                     suptitle="decision boundaries by initialization"))
    return res


# ------------------------------------------------------------------------------------------- regularization

def regularization(iterations: int | None = None, learning_rate: float = 0.3, l2: float = 0.7,
                   keep_prob: float = 0.86, seed: int = 0, init_seed: int = 3, bayes_error: float | None = None,
                   quick: bool = False, out_dir=None, verbose: bool = False) -> ExperimentResult:
    """No regularization vs L2 (``l2``) vs dropout (``keep_prob``) on ``datasets.football(seed=seed)``.

    [2, 20, 3, 1], relu / sigmoid, full-batch gd, ``iterations`` steps (30,000; 10,000 with ``quick``) at
    ``learning_rate``; every model starts from the course's init (``randn / sqrt(n[l-1])`` drawn with
    ``np.random.RandomState(init_seed)``, i.e. "lecun"), dropout masks seeded. Prints train/dev accuracy
    and the bias/variance verdict (``dk.diagnose.bias_variance``) of each model, judged against
    ``bayes_error`` (default None: estimated as the error of the data's true boundary on train + dev, i.e.
    the label-noise rate, about 6 % for seed 0 — the seeds' "relative to Bayes error"). Expected (seed 0): the
    unregularized net fits the training noise (high train, lower dev); L2 and dropout both do better on dev.
    """
    import dnnkit as dk
    from . import datasets, diagnose

    iterations = (10000 if quick else 30000) if iterations is None else int(iterations)
    X, Y, Xd, Yd = datasets.football(seed=seed)
    if bayes_error is None:
        XX, YY = np.hstack([X, Xd]), np.hstack([Y, Yd])
        bayes_error = float(np.mean((XX[1] > datasets._football_boundary(XX[0])) != (YY[0] > 0.5)))
    cases = [("none", {}), (f"L2 (lambda={l2:g})", {"l2": l2}), (f"dropout (keep_prob={keep_prob:g})",
                                                                  {"keep_prob": keep_prob})]
    rows, hist, nets, diags = [], {}, {}, {}
    log_every = max(1, iterations // 150)
    for label, kw in cases:
        net = dk.Network([2, 20, 3, 1], hidden="relu", output="sigmoid")
        net.initialize("lecun", rng=np.random.RandomState(init_seed))
        h = net.fit(X, Y, epochs=iterations, learning_rate=learning_rate, validation=(Xd, Yd), seed=0,
                    log_every=log_every, verbose=verbose, **kw)
        tr, dv = net.evaluate(X, Y), net.evaluate(Xd, Yd)
        d = diagnose.bias_variance(tr["error"], dv["error"], bayes_error=bayes_error)
        rows.append({"model": label, "train acc": tr["accuracy"], "dev acc": dv["accuracy"],
                     "train-dev gap": dv["error"] - tr["error"], "verdict": d.verdict})
        hist[label], nets[label], diags[label] = h, net, d
    res = ExperimentResult(
        "regularization",
        f"Regularization: football data (seed {seed}), [2, 20, 3, 1], lr {learning_rate:g}, {iterations} iterations",
        ["model", "train acc", "dev acc", "train-dev gap", "verdict"], rows,
        extra={"histories": hist, "nets": nets, "diagnoses": diags, "data": (X, Y, Xd, Yd),
               "bayes_error": bayes_error})
    res.notes.append(f"Bayes error (the true boundary's error on these labels): {_pct(bayes_error)}")
    base = rows[0]["dev acc"]
    for r in rows[1:]:
        delta = r["dev acc"] - base
        res.notes.append(f"{r['model']}: dev accuracy {'+' if delta >= 0 else ''}{100 * delta:.1f} points vs none")
    first = diags[rows[0]["model"]]
    if first.recommendations:
        res.notes.append(f"none -> {first.verdict}; next steps: " + "; ".join(first.recommendations[:2]))
    paths = _figure_paths(out_dir, ["reg_costs", "reg_boundaries"])
    if paths:
        from . import plots

        res.figures.append(plots.cost_curves(hist, path=paths["reg_costs"], title="football: train (solid) / dev (dashed) cost"))
        res.figures.append(plots.decision_boundaries(nets, X, Y, path=paths["reg_boundaries"],
                                                     suptitle="football: decision boundaries (training data)"))
    return res


# ------------------------------------------------------------------------------------------- gradient checking

def course_gradcheck_case():
    """The course's gradient-checking net: ``(X, Y, params)`` from ``np.random.seed(1)`` (X (4, 3), Y [[1, 1, 0]],
    W1 (5, 4), b1 (5, 1), W2 (3, 5), b2 (3, 1), W3 (1, 3), b3 (1, 1); relu, relu, sigmoid). Restores the
    global NumPy random state afterwards."""
    state = np.random.get_state()
    try:
        np.random.seed(1)
        X = np.random.randn(4, 3)
        Y = np.array([[1.0, 1.0, 0.0]])
        params = {}
        for name, shape in (("W1", (5, 4)), ("b1", (5, 1)), ("W2", (3, 5)), ("b2", (3, 1)), ("W3", (1, 3)),
                            ("b3", (1, 1))):
            params[name] = np.random.randn(*shape)
    finally:
        np.random.set_state(state)
    return X, Y, params


def course_backprop(X, Y, params, planted_bugs: bool = True) -> dict:
    """The course's ``backward_propagation_n`` for the 3-layer relu/relu/sigmoid net, written out in NumPy,
    with its two planted bugs (``dW2`` multiplied by 2, ``db1`` computed with 4./m) unless
    ``planted_bugs=False``."""
    W1, b1, W2, b2, W3, b3 = (params[k] for k in ("W1", "b1", "W2", "b2", "W3", "b3"))
    m = X.shape[1]
    Z1 = W1 @ X + b1
    A1 = np.maximum(0, Z1)
    Z2 = W2 @ A1 + b2
    A2 = np.maximum(0, Z2)
    Z3 = W3 @ A2 + b3
    A3 = 1.0 / (1.0 + np.exp(-Z3))
    dZ3 = A3 - Y
    dW3 = 1.0 / m * dZ3 @ A2.T
    db3 = 1.0 / m * np.sum(dZ3, axis=1, keepdims=True)
    dA2 = W3.T @ dZ3
    dZ2 = dA2 * (A2 > 0)
    dW2 = 1.0 / m * dZ2 @ A1.T * (2 if planted_bugs else 1)       # bug 1: "* 2"
    db2 = 1.0 / m * np.sum(dZ2, axis=1, keepdims=True)
    dA1 = W2.T @ dZ2
    dZ1 = dA1 * (A1 > 0)
    dW1 = 1.0 / m * dZ1 @ X.T
    db1 = (4.0 if planted_bugs else 1.0) / m * np.sum(dZ1, axis=1, keepdims=True)   # bug 2: "4./m"
    return {"dW1": dW1, "db1": db1, "dW2": dW2, "db2": db2, "dW3": dW3, "db3": db3}


def learner_backprop(X, Y, params) -> dict:
    """A learner's backprop of the same net with a mistake only the hypothesis test can name: layer 2's ReLU
    derivative is left out (``dZ2 = dA2`` instead of ``dA2 * (A2 > 0)``). The residual is no constant factor,
    sign, missing term or transpose, so the pattern finder alone can only say where the errors are."""
    W1, b1, W2, b2, W3, b3 = (params[k] for k in ("W1", "b1", "W2", "b2", "W3", "b3"))
    m = X.shape[1]
    Z1 = W1 @ X + b1
    A1 = np.maximum(0, Z1)
    Z2 = W2 @ A1 + b2
    A2 = np.maximum(0, Z2)
    Z3 = W3 @ A2 + b3
    A3 = 1.0 / (1.0 + np.exp(-Z3))
    dZ3 = A3 - Y
    dW3 = 1.0 / m * dZ3 @ A2.T
    db3 = 1.0 / m * np.sum(dZ3, axis=1, keepdims=True)
    dA2 = W3.T @ dZ3
    dZ2 = dA2                                                   # the mistake: "* (A2 > 0)" forgotten
    dW2 = 1.0 / m * dZ2 @ A1.T
    db2 = 1.0 / m * np.sum(dZ2, axis=1, keepdims=True)
    dA1 = W2.T @ dZ2
    dZ1 = dA1 * (A1 > 0)
    dW1 = 1.0 / m * dZ1 @ X.T
    db1 = 1.0 / m * np.sum(dZ1, axis=1, keepdims=True)
    return {"dW1": dW1, "db1": db1, "dW2": dW2, "db2": db2, "dW3": dW3, "db3": db3}


def gradient_checking(out_dir=None, eps: float = 1e-7) -> ExperimentResult:
    """The course's gradient-checking exercise with ``dk.gradcheck``.

    Four checks of the same net and data (:func:`course_gradcheck_case`): the course's backprop with its two
    planted bugs (expected: difference 0.285, verdict "bug", the worst components W2 (x2) and b1 (x4) and
    every other component correct), the same backprop fixed, the native ``net.backward`` (both pass), and a
    learner's backprop that leaves out layer 2's ReLU derivative (:func:`learner_backprop`): named by the
    mistake hypotheses ("dW2 and db2 equal a backprop that leaves out the activation derivative of layer 2",
    W1 and b1 "wrong only because dA1 comes from the wrong dZ2: fix layer 2 first").
    """
    import dnnkit as dk

    X, Y, params = course_gradcheck_case()
    net = dk.Network([4, 5, 3, 1], hidden="relu", output="sigmoid", params=params)
    reports = {
        "course backprop, 2 planted bugs": dk.gradcheck(net, X, Y, grads=course_backprop(X, Y, params, True), eps=eps),
        "course backprop, fixed": dk.gradcheck(net, X, Y, grads=course_backprop(X, Y, params, False), eps=eps),
        "dnnkit net.backward": dk.gradcheck(net, X, Y, eps=eps),
        "learner backprop, ReLU derivative left out in layer 2": dk.gradcheck(net, X, Y,
                                                                             grads=learner_backprop(X, Y, params),
                                                                             eps=eps),
    }
    rows = []
    for label, rep in reports.items():
        bad = sorted((c for c in rep.components if c.verdict != "correct"), key=lambda c: -c.difference)
        rows.append({"backprop": label, "difference": float(rep), "verdict": rep.verdict,
                     "flagged components": ", ".join(f"{c.name} ({c.difference:.3f})" for c in bad) or "none"})
    buggy = reports["course backprop, 2 planted bugs"]
    res = ExperimentResult("gradient_checking",
                           "Gradient checking: the course's 3-layer net (np.random.seed(1), X 4x3, relu/relu/sigmoid)",
                           ["backprop", "difference", "verdict", "flagged components"], rows,
                           extra={"reports": reports})
    res.notes.append("the buggy backprop, component by component:")
    res.notes.append(str(buggy))
    learner = reports["learner backprop, ReLU derivative left out in layer 2"]
    res.notes.append("a learner's backprop with a mistake no residual pattern describes (dZ2 = dA2): the hypothesis "
                     "test names it and tells layer 1 to wait for layer 2's fix:")
    res.notes.append(str(learner))
    res.extra["named"] = [(e.mistake, e.layer, e.message, e.fix) for e in learner.mistakes]
    res.extra["patterns_without_hypotheses"] = {c.name: c.pattern for c in learner.components if c.pattern}
    worst = sorted(buggy.components, key=lambda c: -c.difference)[:2]
    res.extra["localized"] = [c.name for c in worst]
    res.extra["findings"] = {c.name: c.finding for c in worst}
    paths = _figure_paths(out_dir, ["gradcheck_buggy", "gradcheck_fixed"])
    if paths:
        from . import plots

        res.figures.append(plots.gradcheck_report(buggy, path=paths["gradcheck_buggy"]))
        res.figures.append(plots.gradcheck_report(reports["course backprop, fixed"], path=paths["gradcheck_fixed"]))
    return res


# ------------------------------------------------------------------------------------------- vanishing / exploding

def vanishing_exploding(depth: int = 10, deep_depth: int = 20, width: int = 100, m: int = 500, seed: int = 0,
                        out_dir=None) -> ExperimentResult:
    """``dk.diagnose.propagation`` on the seeds' examples.

    1. The deep-linear net of ``depth`` layers of 2 units with ``W[l] = c I``: the signal reaching the last
       layer scales as ``c^(L-1)``: 1.5^9 = 38.4 (exploding) and 0.5^9 = 0.00195 (vanishing) for L = 10.
    2. A ``deep_depth``-layer net of ``width`` units: He (relu) and LeCun / Glorot (tanh) keep the activation
       and gradient scales near 1 end to end; small (0.01) and large (1.0) random init vanish / explode.
    """
    from . import diagnose

    rows, reps = [], {}
    for c in (1.5, 0.5):
        r = diagnose.propagation(depth=depth, width=2, activation="linear", weights=c, m=m, seed=seed)
        label = f"linear, W = {c:g} I"
        reps[label] = r
        rows.append({"net": label, "depth": depth, "A[L-1]/x": r.ratio, "expected": c ** (depth - 1),
                     "dA[0]/dA[L]": r.gradient_ratio, "verdict": r.verdict})
    cases = [("relu", "he", None), ("tanh", "lecun", None), ("tanh", "glorot", None),
             ("relu", "random", 0.01), ("relu", "random", 1.0)]
    for act, init, scale in cases:
        r = diagnose.propagation(depth=deep_depth, width=width, activation=act, init=init, scale=scale, m=m,
                                 seed=seed)
        label = f"{act}, {init}" + (f" x{scale:g}" if scale is not None else "")
        reps[label] = r
        rows.append({"net": label, "depth": deep_depth, "A[L-1]/x": r.ratio, "expected": None,
                     "dA[0]/dA[L]": r.gradient_ratio, "verdict": r.verdict})
    res = ExperimentResult("vanishing_exploding",
                           f"Vanishing / exploding: deep-linear (2 units, L={depth}) and deep nets "
                           f"({width} units, L={deep_depth})",
                           ["net", "depth", "A[L-1]/x", "expected", "dA[0]/dA[L]", "verdict"], rows,
                           extra={"reports": reps})
    res.notes.append(f"deep-linear: y_hat = W[L] (c I)^(L-1) x, so the signal scales as c^(L-1): "
                     f"1.5^{depth - 1} = {1.5 ** (depth - 1):.4g}, 0.5^{depth - 1} = {0.5 ** (depth - 1):.4g}")
    res.notes.append("He (relu) and LeCun/Glorot (tanh) set Var(W) = 2/n or 1/n, keeping the scale near 1; "
                     "random x0.01 vanishes and random x1 explodes")
    paths = _figure_paths(out_dir, ["propagation"])
    if paths:
        from . import plots

        res.figures.append(plots.propagation(reps, path=paths["propagation"]))
    return res


# ------------------------------------------------------------------------------------------- all

def run_all(out_dir=None, quick: bool = False, verbose: bool = False, echo=print) -> dict:
    """Run the four experiments in order, ``echo`` each table as it finishes; returns {name: result}."""
    out = {}
    for name, fn in (("initialization", lambda: initialization(quick=quick, out_dir=out_dir, verbose=verbose)),
                     ("regularization", lambda: regularization(quick=quick, out_dir=out_dir, verbose=verbose)),
                     ("gradient_checking", lambda: gradient_checking(out_dir=out_dir)),
                     ("vanishing_exploding", lambda: vanishing_exploding(out_dir=out_dir))):
        res = fn()
        out[name] = res
        if echo is not None:
            echo(str(res))
            echo("")
    return out
