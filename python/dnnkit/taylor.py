"""The Taylor test: an eps-free check of a gradient by its convergence order.

For a direction ``d`` (a random unit vector inside one component W[l] or b[l]) and steps h = h0, h0/2, h0/4, ...
the first-order Taylor remainder

    r(h) = | J(theta + h d) - J(theta) - h g.d |

is O(h^2) when ``g`` is the gradient (J is twice differentiable along d) and only O(h) when it is not:
r(h) ~ h |(grad J - g).d| + h^2 |d' H d| / 2, so halving h divides r by 4 for a correct gradient and by 2 for a
wrong one, however small the error — a 0.1 % error shows as order 1 once h is small enough that the linear term
dominates. The observed order of each halving is log2(r(h) / r(h/2)); a component's ``rate`` is the mean order of
its last (smallest-h) halvings whose remainders stand clear of the float64 rounding floor of J (about
1e3 u |J|). No threshold on a relative difference and no eps to choose: the rate is ~2 or ~1.

When to use it instead of the seeds' relative difference (``dk.gradcheck``): when you do not know which
difference to call "small" — a gradient with a tiny systematic error (a 1e-4 relative bug) scores a
difference in the "check" zone of gradcheck but has rate 1 here once h0 is small enough (h0 ~ 1e-4); when J is computed in a way whose rounding
makes a centered difference at eps = 1e-7 noisy (a user ``cost_fn`` in float32, a large cost); or as a second
opinion that does not depend on eps. gradcheck localizes to the element and names the mistake; the Taylor test
localizes to the component and costs only a few cost evaluations per component.

Kinks: along d a ReLU unit may switch on or off between theta and theta + h d, and r(h) then has an O(h) part
for a correct gradient too. In net mode every step h is checked for that (the hidden units' on/off pattern at
theta + h d equals the one at theta); steps that switch a unit are left out of the rate, and a component
left with fewer than two usable halvings is "unverified" (with the reason), never "correct".
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from . import _validation as V

__all__ = ["taylor_test", "TaylorReport", "TaylorRow", "RATE_CORRECT_ABOVE", "RATE_BUG_BELOW"]

RATE_CORRECT_ABOVE = 1.8   # order ~2: the gradient is the derivative along d
RATE_BUG_BELOW = 1.3       # order ~1: a first-order error in g.d
_FLOOR_ULPS = 1e3          # a remainder below 1e3 u (|J(theta)| + |J(theta + h d)|) is rounding, not a signal
_N_LAST = 3                # halvings averaged into the rate (the smallest usable steps)


@dataclass
class TaylorRow:
    """One component: its directions' remainders per step and the observed convergence order."""
    name: str
    shape: tuple
    rate: float                     # mean observed order of the last usable halvings (worst direction); NaN if none
    verdict: str                    # "correct" / "check" / "bug" / "unverified"
    reason: str                     # one line: why that verdict
    h: list = field(default_factory=list)            # the steps
    remainders: list = field(default_factory=list)   # per direction: r(h) per step (NaN where unusable)
    orders: list = field(default_factory=list)       # per direction: log2(r(h)/r(h/2)) per halving (NaN unusable)
    rates: list = field(default_factory=list)        # per direction: its rate

    def to_dict(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "rate": self.rate, "verdict": self.verdict,
                "reason": self.reason, "h": list(self.h), "remainders": [list(r) for r in self.remainders],
                "orders": [list(o) for o in self.orders], "rates": list(self.rates)}


class TaylorReport:
    """Result of :func:`taylor_test`: ``components`` (one :class:`TaylorRow` per W[l], b[l] or parameter),
    ``verdict`` (the worst component's), ``print(report)``, ``report.to_dict()``, ``report.plot()``."""

    def __init__(self, rows, cost, h, n_directions, mode):
        self.components = list(rows)
        self.cost = float(cost)
        self.h = list(h)
        self.n_directions = int(n_directions)
        self.mode = mode

    @property
    def verdict(self) -> str:
        vs = [c.verdict for c in self.components]
        for v in ("bug", "check", "unverified"):
            if v in vs:
                return v
        return "correct"

    @property
    def rate(self) -> float:
        """The smallest component rate (NaN-free; NaN if no component has one)."""
        r = [c.rate for c in self.components if not math.isnan(c.rate)]
        return min(r) if r else math.nan

    def __bool__(self) -> bool:
        return self.verdict == "correct"

    def __getitem__(self, name: str) -> TaylorRow:
        for c in self.components:
            if c.name == name:
                return c
        raise KeyError(name)

    def to_dict(self) -> dict:
        return {"verdict": self.verdict, "rate": self.rate, "cost": self.cost, "h": list(self.h),
                "n_directions": self.n_directions, "mode": self.mode,
                "thresholds": {"rate_correct_above": RATE_CORRECT_ABOVE, "rate_bug_below": RATE_BUG_BELOW},
                "components": [c.to_dict() for c in self.components]}

    def _repr_html_(self) -> str:  # Jupyter: the per-component rates with the verdict coloured
        from . import _html

        return _html.taylor_report(self)

    def __str__(self) -> str:
        head = (f"Taylor test ({self.mode}, {self.n_directions} direction(s) per component, h = {self.h[0]:g} ... "
                f"{self.h[-1]:g}): remainder |J(theta+hd) - J(theta) - h g.d| should shrink as h^2\n"
                f"verdict: {self.verdict.upper()}   (rate > {RATE_CORRECT_ABOVE:g}: correct, "
                f"< {RATE_BUG_BELOW:g}: bug; a wrong gradient converges at rate 1)")
        cols = ["component", "shape", "rate", "verdict", "why"]
        body = [[c.name, "x".join(str(s) for s in c.shape), "nan" if math.isnan(c.rate) else f"{c.rate:.2f}",
                 c.verdict, c.reason] for c in self.components]
        widths = [max(len(cols[i]), *(len(r[i]) for r in body)) if body else len(cols[i]) for i in range(len(cols))]
        fmt = lambda r: "  ".join(v.ljust(widths[i]) for i, v in enumerate(r)).rstrip()  # noqa: E731
        return "\n".join([head, fmt(cols), fmt(["-" * w for w in widths])] + [fmt(r) for r in body])

    def __repr__(self) -> str:
        return f"TaylorReport(verdict={self.verdict!r}, rate={self.rate:.3g}, components={len(self.components)})"

    def plot(self, ax=None):
        """Log-log remainder vs h per component (worst direction), with slope-1 and slope-2 guides."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(5.5, 4.0))
        h = np.asarray(self.h)
        ymin = []
        for c in self.components:
            k = int(np.nanargmin(c.rates)) if np.any(np.isfinite(c.rates)) else 0
            r = np.asarray(c.remainders[k], dtype=np.float64)
            ok = np.isfinite(r) & (r > 0)
            if ok.any():
                ax.loglog(h[ok], r[ok], "o-", ms=3, label=f"{c.name} (rate {c.rate:.2f})")
                ymin.append(float(np.min(r[ok])))
                ymin.append(float(np.max(r[ok])))
        if ymin:
            y0 = float(np.exp(np.mean(np.log(ymin))))
            for p, ls in ((1, ":"), (2, "--")):
                ax.loglog(h, y0 * (h / h[len(h) // 2]) ** p, color="gray", ls=ls, lw=1, label=f"slope {p}")
        ax.set_xlabel("h")
        ax.set_ylabel("|J(θ+hd) − J(θ) − h g·d|")
        ax.set_title(f"Taylor test: {self.verdict}")
        ax.legend(loc="best", fontsize=7)
        return ax


# ----------------------------------------------------------------------------------------------- the test

def taylor_test(net_or_fn, X_or_params, Y_or_grads=None, *, grads=None, l2=0.0, l1=0.0, keep_prob=1.0, seed=None,
                masks=None, step=0, h0=1e-2, n_steps=8, n_directions=2, rng=0) -> TaylorReport:
    """The Taylor remainder test per component (see the module docstring).

    Call forms (those of :func:`dnnkit.gradcheck`)::

        taylor_test(net, X, Y, l2=0.7)              # net.backward (float64 twin)
        taylor_test(net, X, Y, grads=my_grads)      # YOUR gradients (dict "dW1", ... or flat)
        taylor_test(cost_fn, params, grads)         # any J(params) -> float (params dict or flat)

    h0: the largest step along a unit direction; ``n_steps`` steps h0, h0/2, ..., h0/2^(n_steps-1).
    n_directions: random unit directions per component (seeded by ``rng``); a component's rate is that of its
    worst direction. Dropout needs ``seed`` (or ``masks``), as in gradcheck.
    """
    from .gradient_check import (_Layout, _check_network_inputs, _flat_grads, _is_network, _prepare_function)

    h0 = V.check_real(h0, "h0", 0.0, 1.0, lo_open=True, hi_open=True)
    n_steps = V.check_positive_int(n_steps, "n_steps", minimum=3)
    n_directions = V.check_positive_int(n_directions, "n_directions")
    gen = V.as_generator(rng)
    if _is_network(net_or_fn):
        if Y_or_grads is None:
            raise TypeError("taylor_test(net, X, Y, grads=...): Y is required")
        prob = _check_network_inputs(net_or_fn, X_or_params, Y_or_grads, l2, l1, keep_prob, seed, masks, step)
        twin, X, Y, kw = prob["twin"], prob["X"], prob["Y"], prob["kw"]
        theta = twin.theta.copy()
        if grads is None:
            twin.backward(X, Y, **kw)
            g = twin.grad_vector.astype(np.float64, copy=True)
        else:
            g = _flat_grads(grads, list(twin.layer_dims), theta.size)
        layout = _Layout.from_dims(list(twin.layer_dims))
        kinked = twin.hidden in ("relu", "leaky_relu")

        def J(th):
            twin.theta = th
            return twin.cost(X, Y, **kw)

        def pattern(th):
            twin.theta = th
            _, cache = twin.forward(X, keep_prob=kw["keep_prob"], seed=kw["seed"], masks=kw["masks"],
                                    step=kw["step"])
            return [cache[f"Z{l}"] > 0 for l in range(1, twin.L)]
        mode = "network"
        try:
            rows, J0 = _run(J, pattern if kinked else None, theta, g, layout, h0, n_steps, n_directions, gen)
        finally:
            twin.theta = theta
    elif callable(net_or_fn):
        g_in = grads if grads is not None else Y_or_grads
        if g_in is None:
            raise TypeError("taylor_test(cost_fn, params, grads): grads is required")
        layout, theta, g, J = _prepare_function(net_or_fn, X_or_params, g_in)
        mode = "cost function"
        rows, J0 = _run(J, None, theta, g, layout, h0, n_steps, n_directions, gen)
    else:
        raise TypeError(f"taylor_test expects a dnnkit.Network or a callable J(params) -> float, "
                        f"got {type(net_or_fn).__name__}")
    h = [h0 / 2 ** i for i in range(n_steps)]
    return TaylorReport(rows, J0, h, n_directions, mode)


def _run(J, pattern, theta, g, layout, h0, n_steps, n_directions, gen):
    h = np.array([h0 / 2 ** i for i in range(n_steps)])
    J0 = float(J(theta))
    if not math.isfinite(J0):
        raise ValueError(f"J(theta) is not finite ({J0}): nothing to test")
    p0 = pattern(theta) if pattern is not None else None
    rows = []
    for name, start, stop, shape, _ in layout.comps:
        n = stop - start
        rems, orders, rates, why = [], [], [], []
        for _ in range(n_directions):
            d = gen.standard_normal(n)
            d /= math.sqrt(float(d @ d))
            full = np.zeros_like(theta)
            full[start:stop] = d
            gd = float(g[start:stop] @ d)
            r = np.full(n_steps, np.nan)
            floor = np.zeros(n_steps)
            n_kinked = 0
            for i, hi in enumerate(h):
                th = theta + hi * full
                if p0 is not None and any(np.any(a != b) for a, b in zip(pattern(th), p0)):
                    n_kinked += 1
                    continue   # a unit switched between theta and theta + h d: r(h) has an O(h) part anyway
                Jh = float(J(th))
                r[i] = abs(Jh - J0 - hi * gd)
                floor[i] = _FLOOR_ULPS * np.finfo(np.float64).eps * (abs(J0) + abs(Jh))
            usable = np.isfinite(r) & (r > floor)
            o = np.full(n_steps - 1, np.nan)
            for i in range(n_steps - 1):
                if usable[i] and usable[i + 1]:
                    o[i] = math.log2(r[i] / r[i + 1])
            valid = o[np.isfinite(o)]
            rate = float(np.mean(valid[-_N_LAST:])) if valid.size else math.nan
            rems.append([float(v) for v in r])
            orders.append([float(v) for v in o])
            rates.append(rate)
            if math.isnan(rate):
                if n_kinked == n_steps or (n_kinked and not np.any(r > floor)):
                    why.append(f"a ReLU unit switches along d at {n_kinked} of {n_steps} steps")
                elif np.all(np.isfinite(r)) and not np.any(r > floor):
                    why.append("remainder at the rounding level of J at every step (J is linear along d "
                               "and g.d is exact)")
                else:
                    why.append("fewer than two usable steps")
            else:
                why.append("")
        finite = [r for r in rates if not math.isnan(r)]
        unusable = [w for r, w in zip(rates, why) if math.isnan(r) and "rounding" not in w]
        rate = min(finite) if finite else math.nan
        if not math.isnan(rate) and rate < RATE_BUG_BELOW:
            verdict, reason = "bug", "remainder O(h): g.d is not the derivative along d"
        elif unusable:   # a direction that could not be judged: never "correct" about it
            verdict, reason = "unverified", unusable[0] + (f" ({len(unusable)} of {len(rates)} directions)"
                                                           if len(rates) > 1 else "")
        elif math.isnan(rate):
            verdict, reason = "correct", why[0]
        elif rate > RATE_CORRECT_ABOVE:
            verdict, reason = "correct", "remainder O(h^2)"
        else:
            verdict, reason = "check", f"order {rate:.2f}: between 1 and 2 (try a smaller h0)"
        rows.append(TaylorRow(name, tuple(shape), rate, verdict, reason, [float(v) for v in h], rems, orders, rates))
    return rows, J0
