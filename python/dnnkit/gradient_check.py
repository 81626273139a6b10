"""Gradient checking that is exact, fast, and says where the bug is.

``gradcheck`` compares gradients with centered differences ``(J(theta+eps) - J(theta-eps)) / 2eps`` — the
seeds' method — and returns a :class:`GradcheckReport`: the seeds' relative difference
``||a - g|| / (||a|| + ||g||)``, a verdict, and one row per W[l] / b[l] with its own difference, worst
element and a *finding* (gradient scaled by a constant, sign flipped, L2/L1 term missing, block never
written, transposed, worst rows/columns). ReLU/leaky kinks crossed within +-eps are verified per example on the
side that crosses none (dnnkit.kinks) instead of being reported as bugs or dropped; when a component is wrong the
mistake hypotheses of dnnkit.mistakes name the learner's mistake and its fix.

Three call forms::

    gradcheck(net, X, Y, l2=0.7)                  # checks net.backward (computed in float64)
    gradcheck(net, X, Y, grads=my_grads)          # checks YOUR gradients (dict "dW1", ... or flat)
    gradcheck(cost_fn, params, grads)             # any Python J(params) -> float (params dict or flat)

For a Network the native engine is used (float64, OpenMP; see cpp/dnnkit/gradcheck.hpp and
cpp/dnnkit/gradcheck/): it computes the cost CHANGE of each perturbation by propagating deltas, so the only
error left is the O(eps^2) truncation of the centered difference (<= ~1e-14 relative at eps = 1e-7) —
correct gradients score ~1e-16 .. 1e-15 (the straight loop of the seeds scores ~1e-9: two totals J+ and J-
of size ~1 subtracted lose u*J/eps ~ 2e-9). With relu / leaky_relu /
linear hidden layers most coordinates take an exact shortcut: in a linear region the perturbed forward IS
linear propagation, so each perturbed output change is a per-example multiple of a precomputed Jacobian row and
a coordinate costs O(m) (the loss's odd Taylor series per (unit, example) with a proven tail bound, as for
tanh / sigmoid; the exact loss pairs, O(n_L m), where that bound fails); coordinates with a kink within reach (checked per example, upstream and downstream)
go through the general path and are flagged as before (``engine_options={"fast_path": False}`` turns the
shortcut off; ``report.engine_stats`` counts both paths).

eps (default 1e-7, the seeds' value): the centered difference has truncation error ~eps^2 |J'''| / 6
(1e-14 relative here) and, for the straight loop, rounding error ~u |J| / eps (2e-9 at eps = 1e-7): at
1e-7 both are far below the 1e-7 "great" threshold, the course's numbers reproduce, and the window
+-eps in which a ReLU kink can be crossed stays small. The native engine has no u/eps term, so a smaller
eps only narrows the kink window further; a larger one (1e-5 .. 1e-4) suits a noisy user ``cost_fn``.

Verdict (thresholds of the seeds, on the verified coordinates: two-sided, or one-sided across a kink; a float32
gradient uses correct < 1e-5, see CORRECT_BELOW_FLOAT32):
    "correct"  difference < 2e-7 (the course's own cut-off; "~1e-7 great")
    "check"    2e-7 <= difference < 1e-3 ("1e-5: look closer at the components")
    "bug"      difference >= 1e-3, or any component >= 1e-3 (a bug in a small block is not hidden by
               a large correct one).
    "unverified" the verified coordinates say "correct" but some could not be verified at all (an example
               crosses a kink on both sides): never "correct" about what was not checked.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from . import _core
from . import _validation as V
from . import reference as ref
from ._params import layer_slices
from .distributed import distributable
from .network import Network

__all__ = ["gradcheck", "assert_gradients_close", "GradcheckReport", "ComponentRow", "DEFAULT_EPS",
           "CORRECT_BELOW", "BUG_FROM"]

DEFAULT_EPS = 1e-7
CORRECT_BELOW = 2e-7
BUG_FROM = 1e-3
KINK_ACT, KINK_L1 = 1, 2
# A float32 backprop rounds each operation at u32 = 6e-8; a gradient entry is a sum of m products through L layers,
# so a correct float32 gradient differs from the exact one by ~1e-8..1e-6 relative (measured on 60 random nets,
# widths <= 30, m <= 200, relu/tanh/sigmoid/leaky, three losses, L2: median 5e-8, max 8e-7, for a NumPy float32
# backprop and for dnnkit's float32 backward alike) — the seeds' 2e-7 calls some correct float32 gradients
# "check". 1e-5 is ~170 u32: above the float32 rounding of any reasonable net, far below a real bug (>= 1e-3).
CORRECT_BELOW_FLOAT32 = 1e-5
FLOAT32_WHY = ("correct below 1e-5 (~170 float32 roundings, u32 = 6e-8: a correct float32 backprop is off by "
               "up to ~1e-6 relative), bug from 1e-3 as for float64; named mistakes match to 1e-5 instead of 1e-8")


def _dot(a, b) -> float:
    """a . b of 1-D float64 vectors without BLAS: NumPy's BLAS threads a long dot product, and on a busy machine
    the hand-off costs milliseconds per call (measured 4-8 ms for 1e5 elements at load 2 on 2 cores, 0.05 ms
    here). Same semantics as ``a @ b`` (NaN / inf propagate)."""
    return float(np.einsum("i,i->", np.ravel(a), np.ravel(b)))


def _norm(a) -> float:
    return math.sqrt(_dot(a, a)) if np.size(a) else 0.0


def _rel(a, g) -> float:
    a = np.asarray(a, dtype=np.float64)
    g = np.asarray(g, dtype=np.float64)
    num = _norm(g - a)
    den = _norm(g) + _norm(a)
    if not np.isfinite(num) or not np.isfinite(den):
        return math.inf
    return 0.0 if den == 0 else float(num / den)


def _thresholds(grad_dtype: str) -> dict:
    """The verdict thresholds for a gradient computed in ``grad_dtype``."""
    if grad_dtype == "float32":
        return {"correct_below": CORRECT_BELOW_FLOAT32, "bug_from": BUG_FROM,
                "why": FLOAT32_WHY}
    return {"correct_below": CORRECT_BELOW, "bug_from": BUG_FROM, "why": "the seeds' thresholds (float64 gradient)"}


def _verdict(d: float, t: dict | None = None) -> str:
    t = t or {"correct_below": CORRECT_BELOW, "bug_from": BUG_FROM}
    if not d < t["bug_from"]:  # also NaN / inf
        return "bug"
    return "correct" if d < t["correct_below"] else "check"


# ----------------------------------------------------------------------------- report

@dataclass
class ComponentRow:
    name: str
    shape: tuple
    difference: float
    max_abs_error: float
    worst_index: tuple | None  # (layer, row, col) for W[l]/b[l] (col 0 for b); (i,) for a flat theta
    n_checked: int
    n_kinks: int
    finding: str
    verdict: str = "correct"
    kink_indices: list = field(default_factory=list)  # flat indices of the unreliable coordinates (first 20)
    n_one_sided: int = 0         # kink-crossing coordinates verified per example on the side that crosses none
    n_unverified: int = 0        # kink-crossing coordinates that could not be verified (never "correct")
    mistake: str | None = None   # the named mistake (dnnkit.mistakes) that reproduces this component, if any
    pattern: str = ""            # the residual pattern found without hypotheses (kept when a mistake is named)

    def to_dict(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "difference": self.difference,
                "max_abs_error": self.max_abs_error,
                "worst_index": None if self.worst_index is None else list(self.worst_index),
                "n_checked": self.n_checked, "n_kinks": self.n_kinks, "finding": self.finding,
                "verdict": self.verdict, "kink_indices": list(self.kink_indices), "n_one_sided": self.n_one_sided,
                "n_two_sided": self.n_checked - self.n_kinks, "n_unverified": self.n_unverified,
                "mistake": self.mistake,
                "pattern": self.pattern}


@dataclass
class _Layout:
    """Components of theta: name -> (flat slice, shape, layer or None)."""
    comps: list  # [(name, start, stop, shape, layer)]
    m: int = 1
    l2: float = 0.0
    l1: float = 0.0

    @classmethod
    def from_dims(cls, dims, m=1, l2=0.0, l1=0.0):
        comps = []
        for name, (sl, shape) in layer_slices(dims).items():
            comps.append((name, sl.start, sl.stop, shape, int(name[1:])))
        return cls(comps, m, l2, l1)

    @classmethod
    def from_dict(cls, params: dict):
        comps, off = [], 0
        for name, a in params.items():
            shape = tuple(np.shape(a))
            size = int(np.prod(shape)) if shape else 1
            layer = int(name[1:]) if name[:1] in "Wb" and name[1:].isdigit() else None
            comps.append((name, off, off + size, shape, layer))
            off += size
        return cls(comps)

    @property
    def size(self) -> int:
        return self.comps[-1][2] if self.comps else 0


class GradcheckReport:
    """Result of :func:`gradcheck`. ``float(report)`` is the seeds' relative difference over the verified
    coordinates (or directions): those whose +-eps crossed no kink (two-sided) and the kink-crossing ones verified
    per example on the side that crosses none (one-sided, ``dnnkit.kinks``) — the basis of ``verdict``;
    ``n_verified`` / ``n_checked`` says how much that is, and coordinates that could not be verified make the
    verdict "unverified" (never "correct"), with ``unverified_reason``. ``difference`` is the plain centered
    difference over every coordinate, kinks included."""

    def __init__(self, *, mode, eps, layout, indices, approx, grad, flags, theta_vals, directions=None,
                 dir_components=None, cost=None, engine="native", kink_approx=None,
                 kink_reasons=None, grad_dtype="float64", kink_error=None):
        self.mode = mode
        self.eps = float(eps)
        self.engine = engine
        self.cost = cost
        self._layout = layout
        self.indices = np.asarray(indices, dtype=np.int64)
        self.approx = np.asarray(approx, dtype=np.float64)   # numeric derivative per coordinate / direction
        self.grad = np.asarray(grad, dtype=np.float64)       # the checked gradient, same entries
        self.flags = np.asarray(flags, dtype=np.uint8)       # 1: activation kink crossed, 2: L1 kink
        self._theta_vals = None if theta_vals is None else np.asarray(theta_vals, dtype=np.float64)
        self._dir_components = dir_components                # directional: component name per direction
        # kink-crossing entries verified one-sided (NaN: not verified); reasons for those that were not
        self.kink_approx = np.full(self.approx.size, np.nan) if kink_approx is None else \
            np.asarray(kink_approx, dtype=np.float64)
        self._kink_reasons = [""] * self.approx.size if kink_reasons is None else list(kink_reasons)
        # each one-sided value's error estimate (dnnkit.kinks; inf: none could be made, NaN: none)
        self.kink_error = np.full(self.approx.size, np.nan) if kink_error is None else \
            np.asarray(kink_error, dtype=np.float64)
        self.grad_dtype = grad_dtype
        self.thresholds = _thresholds(grad_dtype)
        self._judge_kinks()
        self.engine_stats = None  # native full/sample checks: {"fast", "general", "routed", "series"} counts
        # False when the check stopped before all requested coordinates were checked (Ctrl-C during a sharded
        # check): the numbers then cover ``checked_indices`` only and ``missing_indices`` lists the rest
        self.complete = True
        self.missing_indices = np.zeros(0, np.int64)
        self.shard_stats = None  # sharded checks: one dict per shard (size, cost, seconds, threads, worker)
        self.mistakes = []        # dnnkit.mistakes.Explanation: the named mistakes (Network checks)
        self.components = self._build_components()

    def _set_mistakes(self, mistakes) -> None:
        """Name the mistakes in the rows they explain (rows the check found wrong); today's pattern stays in
        ``row.pattern``."""
        self.mistakes = list(mistakes)
        for row in self.components:
            if row.verdict == "correct":
                continue
            for e in self.mistakes:
                if row.name in e.components or row.name in e.inherited:
                    row.pattern = row.pattern or row.finding
                    row.mistake = e.mistake
                    row.finding = e.finding(row.name)
                    break

    def _set_kinks(self, values, reasons, errors=None) -> None:
        """One-sided values for the kink-crossing entries (dnnkit.kinks.verify), then the rows again."""
        self.kink_approx = np.asarray(values, dtype=np.float64)
        self._kink_reasons = list(reasons)
        self.kink_error = np.full(self.approx.size, np.nan) if errors is None else \
            np.asarray(errors, dtype=np.float64)
        self._judge_kinks()
        self.components = self._build_components()

    def _judge_kinks(self) -> None:
        """The noise floor of one-sided values (dnnkit.kinks docstring): |a - g| at or below a value's error
        estimate is agreement (judged as a = g, so an all-zero block's ~1e-12 truncation is not a relative
        difference of 1); "unverified" when that estimate exceeds correct_below x the check's gradient scale
        (too large to decide); above the estimate the one-sided value is judged as measured."""
        ka, err = self.kink_approx, self.kink_error
        self._undecided = np.zeros(ka.size, dtype=bool)
        self._judged = np.where(self.flags == 0, self.approx, ka)
        one = (self.flags != 0) & np.isfinite(ka) & np.isfinite(err)
        if not one.any():
            return
        fin = np.concatenate([np.abs(self.grad[np.isfinite(self.grad)]),
                              np.abs(self.approx[(self.flags == 0) & np.isfinite(self.approx)]), [0.0]])
        scale = float(np.max(fin))
        agree = one & (np.abs(ka - self.grad) <= err)
        too_big = agree & (err > self.thresholds["correct_below"] * np.maximum(np.abs(self.grad), scale))
        self._judged = np.where(agree, self.grad, self._judged)
        self._undecided = too_big
        for i in np.flatnonzero(too_big):
            self._kink_reasons[i] = (f"the one-sided value agrees within its error estimate {err[i]:.2g}, too "
                                     f"large to decide")

    # ---- numbers
    @property
    def checked_indices(self) -> np.ndarray:
        """The coordinates (flat indices of theta) this report holds numbers for (``indices``)."""
        return self.indices

    @property
    def reliable(self) -> np.ndarray:
        """Entries whose +-eps crossed no kink (the centered difference is valid there)."""
        return self.flags == 0

    @property
    def verified(self) -> np.ndarray:
        """Entries verified: two-sided (no kink) or one-sided on the side that crosses none."""
        return ((self.flags == 0) | np.isfinite(self.kink_approx)) & ~self._undecided

    @property
    def verified_approx(self) -> np.ndarray:
        """The numeric derivative each verified entry is judged by (NaN where not verified)."""
        return np.where(self.flags == 0, self.approx, np.where(self._undecided, np.nan, self.kink_approx))

    @property
    def n_verified(self) -> int:
        return int(np.count_nonzero(self.verified))

    @property
    def n_one_sided(self) -> int:
        return int(np.count_nonzero((self.flags != 0) & np.isfinite(self.kink_approx) & ~self._undecided))

    @property
    def n_unverified(self) -> int:
        return self.n_checked - self.n_verified

    @property
    def unverified_reason(self) -> str:
        """Why some entries could not be verified ('' when all were)."""
        if not self.n_unverified:
            return ""
        bad = np.flatnonzero(~self.verified)
        why = next((self._kink_reasons[i] for i in bad if self._kink_reasons[i]), "")
        return (f"{bad.size} of {self.n_checked} checked entries cross a ReLU kink within +-eps and could not be "
                f"verified one-sided" + (f" ({why})" if why else ""))

    @property
    def difference(self) -> float:
        return _rel(self.approx, self.grad)

    @property
    def difference_reliable(self) -> float:
        """The seeds' difference over the verified entries (two-sided and one-sided)."""
        r = self.verified
        return _rel(self._judged[r], self.grad[r])

    @property
    def n_checked(self) -> int:
        return int(self.approx.size)

    @property
    def n_kinks(self) -> int:
        return int(np.count_nonzero(self.flags))

    @property
    def verdict(self) -> str:
        t = self.thresholds
        v = _verdict(self.difference_reliable, t)
        # a bug in a small block must not hide behind a large correct one; small blocks only ESCALATE to "bug"
        # (their own differences are noisier near the rounding level, so they never turn "correct" into "check")
        if any(not c.difference < t["bug_from"] for c in self.components):
            return "bug"
        if v == "correct" and self.n_unverified:
            return "unverified"   # never "correct" about a gradient it did not verify
        return v

    def __float__(self) -> float:
        # The seeds' number over the verified coordinates (n_verified of n_checked: the printed report says how
        # many): identical to ``difference`` when no kink was crossed; a kink-crossing coordinate enters with its
        # one-sided value, or not at all when it could not be verified (then the verdict is "unverified").
        return self.difference_reliable

    def __bool__(self) -> bool:
        return self.complete and self.verdict == "correct"  # an interrupted check verified nothing as a whole

    # ---- components and findings
    def _comp_of(self, idx):
        starts = np.array([c[1] for c in self._layout.comps])
        return np.searchsorted(starts, idx, side="right") - 1

    def _build_components(self):
        rows = []
        if self.mode == "directional":
            names = np.asarray(self._dir_components)
            for name, start, stop, shape, layer in self._layout.comps:
                sel = names == name
                if not sel.any():
                    continue
                a, g = self._judged[sel], self.grad[sel]
                r = self.verified[sel]
                kinks = self.flags[sel] != 0
                d = _rel(a[r], g[r])
                err = np.abs(g[r] - a[r])
                finding = _direction_finding(a[r], g[r], d)
                nu = int((~r).sum())
                rows.append(ComponentRow(name, shape, d, float(err.max()) if err.size else 0.0, None,
                                         int(sel.sum()), int(kinks.sum()), finding,
                                         self._row_verdict(d, nu), n_one_sided=int((kinks & r).sum()),
                                         n_unverified=nu))
            return rows
        comp = self._comp_of(self.indices)
        for ci, (name, start, stop, shape, layer) in enumerate(self._layout.comps):
            sel = np.flatnonzero(comp == ci)
            if sel.size == 0:
                continue
            a, g, f = self._judged[sel], self.grad[sel], self.flags[sel]
            local = self.indices[sel] - start
            r = self.verified[sel]
            d = _rel(a[r], g[r])
            err = np.where(r, np.abs(g - a), -np.inf)
            err = np.where(np.isnan(err), np.inf, err)
            k = int(np.argmax(err)) if r.any() else None
            worst = None
            if k is not None:
                worst = _index_tuple(int(local[k]), shape, layer)
            w = None if self._theta_vals is None else self._theta_vals[sel]
            finding = _finding(name, shape, layer, local[r], a[r], g[r], d,
                               None if w is None else w[r], self._layout, full=(sel.size == stop - start))
            if d < self.thresholds["correct_below"] and finding.startswith("small mismatch"):
                finding = f"ok ({self.grad_dtype} rounding level)"
            kink_idx = [int(i) for i in self.indices[sel][f != 0][:20]]
            nu = int((~r).sum())
            rows.append(ComponentRow(name, tuple(shape), d,
                                     float(np.max(np.abs(g[r] - a[r]))) if r.any() else 0.0,
                                     worst, int(sel.size), int((f != 0).sum()), finding, self._row_verdict(d, nu),
                                     kink_idx, n_one_sided=int(((f != 0) & r).sum()), n_unverified=nu))
        return rows

    def _row_verdict(self, d, n_unverified) -> str:
        v = _verdict(d, self.thresholds)
        return "unverified" if v == "correct" and n_unverified else v

    # ---- output
    def to_dict(self) -> dict:
        return {"difference": self.difference, "difference_reliable": self.difference_reliable,
                "verdict": self.verdict, "mode": self.mode, "eps": self.eps, "engine": self.engine,
                "n_checked": self.n_checked, "n_kinks": self.n_kinks, "cost": self.cost, "complete": self.complete,
                "n_missing": int(self.missing_indices.size),
                "engine_stats": None if self.engine_stats is None else dict(self.engine_stats),
                "thresholds": dict(self.thresholds), "grad_dtype": self.grad_dtype,
                "n_verified": self.n_verified, "n_one_sided": self.n_one_sided, "n_unverified": self.n_unverified,
                "unverified_reason": self.unverified_reason,
                "components": [c.to_dict() for c in self.components],
                "mistakes": [e.to_dict() for e in self.mistakes]}

    def __str__(self) -> str:
        what = "directions" if self.mode == "directional" else "coordinates"
        t = self.thresholds
        head = (f"Gradient check ({self.mode}, {self.engine}, eps={self.eps:g}): {self.n_checked} {what}, "
                f"{self.n_kinks} crossing a kink\n"
                f"difference = {self.difference_reliable:.8g}  ->  {self.verdict.upper()}"
                f"   (correct < {t['correct_below']:g}, bug >= {t['bug_from']:g})")
        if not self.complete:
            head += (f"\n  INCOMPLETE: interrupted with {self.missing_indices.size} requested coordinates not checked"
                     " (the numbers cover the checked ones only)")
        if self.grad_dtype != "float64":
            head += f"\n  thresholds for a {self.grad_dtype} gradient: {t['why']}"
        if self.n_kinks:
            head += (f"\n  verified: {self.n_checked - self.n_kinks} two-sided, {self.n_one_sided} one-sided (a ReLU kink"
                     f" inside +-eps; checked per example on the side that crosses none), {self.n_unverified} not at "
                     f"all; the plain centered difference over everything: {self.difference:.8g}")
        if self.n_unverified:
            head += f"\n  UNVERIFIED: {self.unverified_reason}"
        cols = ["component", "shape", "checked", "kinks", "1-sided", "difference", "max|a-g|", "worst (l,r,c)",
                "finding"]
        body = []
        for c in self.components:
            body.append([c.name, "x".join(str(s) for s in c.shape), str(c.n_checked), str(c.n_kinks),
                         str(c.n_one_sided),
                         f"{c.difference:.3e}", f"{c.max_abs_error:.2e}",
                         "-" if c.worst_index is None else str(tuple(c.worst_index)), c.finding])
        widths = [max(len(cols[i]), *(len(r[i]) for r in body)) if body else len(cols[i]) for i in range(len(cols))]
        fmt = lambda r: "  ".join(v.ljust(widths[i]) if i == len(r) - 1 else v.ljust(widths[i])  # noqa: E731
                                  for i, v in enumerate(r)).rstrip()
        lines = [head, fmt(cols), fmt(["-" * w for w in widths])] + [fmt(r) for r in body]
        if self.mistakes:
            lines.append("named mistakes (each reproduces the components to ~1e-8; fix the highest layer first):")
            for e in sorted(self.mistakes, key=lambda e: -e.layer):
                lines.append(f"  * {e.message}")
                lines.append(f"    fix: {e.fix}")
                if e.inherited:
                    lines.append(f"    {', '.join(e.inherited)} are wrong only because dA{e.first_layer - 1} comes "
                                 f"from the wrong dZ{e.first_layer}: fix layer {e.layer} first")
        return "\n".join(lines)

    def _repr_html_(self) -> str:  # Jupyter: the table with the verdict coloured and the findings
        from . import _html

        return _html.gradcheck_report(self)

    def __repr__(self) -> str:
        return (f"GradcheckReport(difference={self.difference:.3e}, verdict={self.verdict!r}, mode={self.mode!r}, "
                f"n_checked={self.n_checked}, n_kinks={self.n_kinks}, n_verified={self.n_verified})")

    def plot(self, ax=None):
        """Per-component bars of the relative difference (log scale) with the verdict thresholds."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(max(4.0, 0.7 * len(self.components) + 2), 3.2))
        names = [c.name for c in self.components]
        vals = [max(c.difference, 1e-17) for c in self.components]
        colors = {"correct": "tab:green", "check": "tab:orange", "bug": "tab:red", "unverified": "tab:gray"}
        ax.bar(names, vals, color=[colors[c.verdict] for c in self.components])
        ax.set_yscale("log")
        ax.axhline(CORRECT_BELOW, color="tab:green", ls="--", lw=1, label=f"correct < {CORRECT_BELOW:g}")
        ax.axhline(BUG_FROM, color="tab:red", ls="--", lw=1, label=f"bug >= {BUG_FROM:g}")
        ax.set_ylabel("relative difference")
        ax.set_title(f"gradient check: {self.difference:.2e} ({self.verdict})")
        ax.legend(loc="best", fontsize=8)
        return ax

    def _reordered(self, pos, mode, cost) -> "GradcheckReport":
        """The entries ``pos`` of this report, in that order, as a report of ``mode`` (sharded checks put the
        merged coordinates back in the serial call's order); every per-entry field travels with its entry."""
        tv = None if self._theta_vals is None else self._theta_vals[pos]
        out = GradcheckReport(mode=mode, eps=self.eps, layout=self._layout, indices=self.indices[pos],
                              approx=self.approx[pos], grad=self.grad[pos], flags=self.flags[pos], theta_vals=tv,
                              cost=cost, engine=self.engine, kink_approx=self.kink_approx[pos],
                              kink_error=self.kink_error[pos],
                              kink_reasons=[self._kink_reasons[i] for i in pos], grad_dtype=self.grad_dtype)
        out.engine_stats = self.engine_stats
        if self.mistakes:
            out._set_mistakes(self.mistakes)
        return out

    # ---- split checks (``report.merge(other, ...)`` or ``GradcheckReport.merge([r1, r2, ...])``, see below)
    @staticmethod
    def merge_all(reports) -> "GradcheckReport":
        reports = list(reports)
        if not reports:
            raise ValueError("nothing to merge")
        r0 = reports[0]
        for r in reports[1:]:
            if r.mode != r0.mode or r.eps != r0.eps or r._layout.comps != r0._layout.comps or \
                    r.grad_dtype != r0.grad_dtype:
                raise ValueError("can only merge reports of the same check (mode, eps and layout)")
        if r0.mode == "directional":
            raise ValueError("directional reports are not split by coordinates; run one check")
        idx = np.concatenate([r.indices for r in reports])
        order = np.argsort(idx, kind="stable")
        if idx.size > 1 and not np.all(np.diff(idx[order]) > 0):  # sorted: a repeat is a zero step (cheaper than np.unique)
            raise ValueError("the reports overlap: the same coordinate was checked twice")
        cat = lambda name: np.concatenate([getattr(r, name) for r in reports])[order]  # noqa: E731
        tv = None if any(r._theta_vals is None for r in reports) else \
            np.concatenate([r._theta_vals for r in reports])[order]
        reasons = [x for r in reports for x in r._kink_reasons]
        merged = GradcheckReport(mode=r0.mode, eps=r0.eps, layout=r0._layout, indices=idx[order],
                                 approx=cat("approx"), grad=cat("grad"), flags=cat("flags"), theta_vals=tv,
                                 cost=r0.cost, engine=r0.engine, kink_approx=cat("kink_approx"),
                                 kink_error=cat("kink_error"),
                                 kink_reasons=[reasons[i] for i in order], grad_dtype=r0.grad_dtype)
        if all(r.engine_stats for r in reports):
            merged.engine_stats = {key: sum(r.engine_stats[key] for r in reports) for key in r0.engine_stats}
        # the named mistakes come from the whole gradient (not from a shard's coordinates): equal in every shard
        # that found something wrong
        named: list = next((r.mistakes for r in reports if r.mistakes), [])
        if named:
            merged._set_mistakes(named)
        # an interrupted part's unchecked coordinates stay unchecked unless another part checked them
        missing = np.setdiff1d(np.concatenate([r.missing_indices for r in reports]), idx).astype(np.int64)
        merged.missing_indices = missing
        merged.complete = all(r.complete for r in reports) or missing.size == 0
        return merged


class _MergeDescriptor:
    """``GradcheckReport.merge(reports)`` on the class, ``report.merge(other, ...)`` on an instance."""

    __doc__ = "Combine reports of disjoint coordinate sets of the same check (e.g. from several processes)."

    def __get__(self, obj, cls):
        if obj is None:
            return lambda reports: cls.merge_all(reports)
        return lambda *others: cls.merge_all([obj, *others])


GradcheckReport.merge = _MergeDescriptor()  # type: ignore[attr-defined]


def _index_tuple(local: int, shape, layer):
    if layer is None:
        return (local,) if len(shape) <= 1 else tuple(int(v) for v in np.unravel_index(local, shape))
    if len(shape) == 2:
        r, c = divmod(local, shape[1])
        return (layer, int(r), int(c))
    return (layer, int(local), 0)


# ----------------------------------------------------------------------------- findings

def _fit(a, g):
    """Least-squares c with g ~ c*a, and the relative residual ||g - c a|| / ||g||."""
    aa = _dot(a, a)
    if aa == 0 or not np.all(np.isfinite(g)):
        return None, math.inf
    c = _dot(a, g) / aa
    gn = _norm(g)
    return c, (_norm(g - c * a) / gn if gn else math.inf)


def _name_constant(c: float, m: int) -> str | None:
    def near(x, y, tol=2e-3):
        return abs(x - y) <= tol * abs(y)

    if near(c, -1.0):
        return "sign flipped (gradient x -1)"
    named = [(2.0, "x2"), (0.5, "x1/2")]
    if m > 2:
        named += [(float(m), f"x m (= x{m}: missing 1/m?)"), (1.0 / m, f"x 1/m (= x1/{m}: divided by m twice?)")]
    for v, s in named:
        if near(c, v):
            return f"gradient scaled by a constant: {s}"
        if near(c, -v):
            return f"gradient scaled by a constant: {s} and sign flipped"
    for k in range(3, 65):
        if near(abs(c), float(k)):
            sgn = " and sign flipped" if c < 0 else ""
            return f"gradient scaled by a constant: x{k} (e.g. {k}/m instead of 1/m){sgn}"
        if near(abs(c), 1.0 / k):
            sgn = " and sign flipped" if c < 0 else ""
            return f"gradient scaled by a constant: x1/{k}{sgn}"
    return None


def _finding(name, shape, layer, local, a, g, d, w, layout: _Layout, full: bool) -> str:
    if g.size == 0:
        return "no coordinate verified: each crosses a ReLU kink on both sides"
    if not np.all(np.isfinite(g)):
        nbad = int(np.count_nonzero(~np.isfinite(g)))
        return f"block not written: {nbad} NaN/Inf values"
    if d < CORRECT_BELOW:
        return "ok"
    if d < 1e-5:
        return "small mismatch (finite-difference rounding level)"
    an = _norm(a)
    if np.all(g == 0) and an > 0:
        return "block is zero (never written?)"
    m = layout.m
    # regularization terms missing / wrong (W blocks of a Network check)
    if w is not None and name.startswith("W"):
        for lam, term, label in ((layout.l2, w, "L2"), (layout.l1, np.sign(w), "L1")):
            if not lam:
                continue
            t = (lam / m) * term if label == "L2" else (lam / (2 * m)) * term
            if _norm(t) == 0:
                continue
            kappa, res = _fit(t, g - a)
            if kappa is not None and res < 1e-3:
                if abs(kappa + 1) < 1e-3:
                    form = "(l2/m) W" if label == "L2" else "(l1/2m) sign(W)"
                    return f"{label} term missing from d{name}: residual = {form}"
                return f"{label} term of d{name} scaled by {1 + kappa:.4g} (expected x1)"
    c, res = _fit(a, g)
    if c is not None and res < 1e-3:
        named = _name_constant(c, m)
        if named:
            return named
        if abs(c - 1) > 1e-3:
            return f"gradient scaled by a constant: x{c:.6g}"
    # transposed: the data is W's gradient laid out as its transpose
    if full and len(shape) == 2 and shape[0] > 1 and shape[1] > 1:
        gt = np.empty(shape[0] * shape[1])
        gt[local] = g
        at = np.empty_like(gt)
        at[local] = a
        if _rel(at, gt.reshape(shape[1], shape[0]).T.reshape(-1)) < 1e-5:
            return (f"transposed (the gradient's elements are those of its transpose, shape "
                    f"({shape[1]}, {shape[0]}); expected shape {tuple(shape)})")
    # where are the errors?
    err = g - a
    if len(shape) == 2 and shape[1] > 1 and layer is not None:
        r_idx, c_idx = np.divmod(local, shape[1])
        parts = []
        for axis, idx, n, label in ((0, r_idx, shape[0], "rows (units of layer %d)" % layer),
                                    (1, c_idx, shape[1], "columns (inputs from layer %d)" % (layer - 1))):
            e2 = np.bincount(idx, weights=err ** 2, minlength=n)
            z = np.bincount(idx, weights=(g == 0) & (a != 0), minlength=n)
            cnt = np.bincount(idx, minlength=n)
            zero_lines = [int(i) for i in np.flatnonzero((cnt > 0) & (z == cnt) & (e2 > 0))]
            if zero_lines and full and len(zero_lines) < n:
                return f"{label.split(' ')[0]} {_short(zero_lines)} are zero (never written?)"
            top = np.argsort(-e2)[:3]
            share = float(e2[top].sum() / e2.sum()) if e2.sum() > 0 else 0.0
            parts.append((share, label, [int(t) for t in top if e2[t] > 0]))
        parts.sort(key=lambda p: -p[0])
        share, label, worst = parts[0]
        if share > 0.9 and len(worst) < shape[1 if label.startswith("col") else 0]:
            return f"errors concentrated in {label} {_short(worst)} ({share:.0%} of the error)"
        return f"errors spread; worst rows {_short(parts[0][2] if parts[0][1].startswith('rows') else parts[1][2])}, " \
               f"worst cols {_short(parts[1][2] if parts[0][1].startswith('rows') else parts[0][2])}"
    top = np.argsort(-(err ** 2))[:3]
    zero = np.flatnonzero((g == 0) & (a != 0))
    if zero.size and zero.size < g.size and full:
        return f"entries {_short([int(local[i]) for i in zero])} are zero (never written?)"
    return f"errors at entries {_short([int(local[i]) for i in top])}"


def _short(v, n=6):
    v = list(v)
    return "[" + ", ".join(str(x) for x in v[:n]) + (", ..." if len(v) > n else "") + "]"


def _direction_finding(a, g, d) -> str:
    if a.size == 0:
        return "no direction verified: each crosses a ReLU kink on both sides"
    if not np.all(np.isfinite(g)):
        return "block not written: NaN/Inf values"
    if d < CORRECT_BELOW:
        return "ok"
    if np.all(g == 0) and np.any(a != 0):
        return "block is zero (never written?)"
    ratios = g / np.where(a == 0, np.nan, a)
    if a.size >= 2 and np.nanmax(ratios) - np.nanmin(ratios) < 1e-3 * abs(np.nanmean(ratios)):
        named = _name_constant(float(np.nanmean(ratios)), 1)
        return named or f"gradient scaled by a constant: x{np.nanmean(ratios):.6g}"
    if a.size == 1 and np.isfinite(ratios[0]):
        return f"g.d / numeric = {ratios[0]:.6g} along one random direction (use mode='full' to localize)"
    return "mismatch along random directions (use mode='full' to localize)"


# ----------------------------------------------------------------------------- inputs

def _is_network(obj) -> bool:
    return isinstance(obj, Network)


def _real64(a, name) -> np.ndarray:
    """A float64 array of a gradient/parameter argument (NaN / Inf pass: in a gradient they are a finding, not
    an input error; a TypeError for non-real data: complex would lose its imaginary part)."""
    return V.as_array(a, name, np.float64, ndim=None, finite=False, allow_empty=True)


def _flat_grads(grads, dims, n, m=None, reshaped=None):
    """Dict ("dW1"/"W1" keys) or flat vector -> float64 flat vector (never validated for finiteness: NaN
    in a gradient is a finding, not an input error). ``reshaped`` (a dict) receives, per component given in
    another shape of the same size, ``name -> (key, given shape, expected shape)``."""
    if isinstance(grads, dict):
        from . import _validation as V

        out = np.empty(n)
        slices = layer_slices(dims)
        keys = V.grad_keys(grads, list(slices), "grads", dims)  # missing or extra (typo) keys
        for name, (sl, shape) in slices.items():
            key = keys[name]
            a = _real64(grads[key], f"grads[{key!r}]")
            if a.size != sl.stop - sl.start:
                from .mistakes import shape_hint

                hint = shape_hint(key, a.shape, shape, m)
                raise ValueError(f"grads[{key!r}] has shape {a.shape}, expected {shape}" + (f" ({hint})" if hint else ""))
            out[sl] = a.reshape(-1)  # C order of the GIVEN shape: a transposed dW shows as "transposed"
            if reshaped is not None and a.shape != shape and not (name[0] == "b" and a.shape == shape[:1]):
                reshaped[name] = (key, a.shape, shape)
        return out
    g = _real64(grads, "grads").reshape(-1)
    if g.size != n:
        raise ValueError(f"grads has {g.size} entries, the network has {n} parameters")
    return g


def _select(n, indices, layout: _Layout, mode, k, rng):
    if indices is None:
        base = np.arange(n, dtype=np.int64)
    elif isinstance(indices, slice):
        base = np.arange(n, dtype=np.int64)[indices]
    else:
        base = V.check_indices(indices, n)
        if base.size and (base.min() < 0 or base.max() >= n):
            raise IndexError(f"indices must lie in [0, {n}), got [{base.min()}, {base.max()}]")
        if np.unique(base).size != base.size:
            raise ValueError("indices contain duplicates")
    if mode == "full":
        return base
    # sample: k coordinates per component (seeded), within the allowed indices
    k = V.check_positive_int(k, "k")
    gen = V.as_generator(rng)
    picked = []
    for _, start, stop, _, _ in layout.comps:
        inside = base[(base >= start) & (base < stop)]
        if inside.size <= k:
            picked.append(inside)
        else:
            picked.append(np.sort(gen.choice(inside, size=k, replace=False)))
    return np.concatenate(picked) if picked else base[:0]


# ----------------------------------------------------------------------------- the check

@distributable
def gradcheck(net_or_fn, X_or_params, Y_or_grads=None, *, grads=None, l2=0.0, l1=0.0, keep_prob=1.0, seed=None,
              masks=None, step=0, eps=DEFAULT_EPS, mode="full", k=16, n_directions=1, indices=None,
              rng=0, engine_options=None, explain=True) -> GradcheckReport:
    """Check gradients with centered differences; see the module docstring for the call forms.

    mode: "full" (every coordinate, or ``indices``), "sample" (``k`` coordinates per component, drawn with
    ``rng``), "directional" (``n_directions`` random unit directions per component: 2 delta passes each,
    localizes to a component, not to an element). ``indices``: a range, slice or array of flat indices of
    theta (to split a full check across processes; combine the reports with ``GradcheckReport.merge``).
    Dropout (keep_prob < 1) needs ``seed`` (or ``masks``): the same masks are then used for every
    perturbation and for the gradient, so J is deterministic.

    Budgets that catch a planted bug (tests/test_gradcheck.py): sample mode with k >= 4 catches a bug that
    scales a component or drops a regularization term (it touches every element of the block); a bug in
    a single element needs mode="full" (or luck). Directional mode with one direction per component catches
    a scaled, sign-flipped, zero or regularization-less block with probability 1 (up to a measure-zero
    direction), and names the block.

    engine_options (Network checks, full/sample modes): a dict for the native engine. ``{"fast_path": False}``
    turns off the linear-region shortcut for relu / leaky_relu / linear hidden layers (on by default; see
    cpp/dnnkit/gradcheck/fast_path.hpp): every coordinate then goes through the general delta-propagation path. Both give
    the same numbers up to rounding and the same kink flags; the option exists to compare them (tests,
    debugging). ``report.engine_stats`` says how many coordinates each path did ({"fast", "general",
    "routed", "series"}: routed = hidden-layer coordinates the fast path handed to the general one because a kink
    was within reach; series = those of "fast" done by a series, smooth.hpp).

    executor (full and sample modes): a ``concurrent.futures.Executor`` (``ProcessPoolExecutor``, a Dask
    ``Client.get_executor()`` or the ``Client`` itself) or a map-like callable (``multiprocessing.Pool().map``):
    the coordinates are cut into ``n_shards`` shards of about equal cost, checked in parallel and merged into
    the report the serial call returns, bit for bit (see :mod:`dnnkit.distributed`). Ctrl-C cancels the
    outstanding shards and returns the partial report with ``report.complete == False``. progress: a tqdm bar
    counting finished shards (None: when tqdm is installed). n_threads: native threads for this call (each
    shard's, with an executor), restored afterwards; None: the process setting, or inside a Dask worker the
    threads Dask gave it. timeout: seconds for a sharded check, then TimeoutError. (These five are handled by
    ``dnnkit.distributed.distributable`` around this function.)

    explain (Network checks): when some component is wrong, test the mistake hypotheses of
    :mod:`dnnkit.mistakes` against your gradient and name the one that reproduces it (``report.mistakes``, the
    rows' ``finding`` / ``mistake``); ``explain=False`` skips them (they cost about one NumPy backprop each).
    """
    V.check_choice(mode, ("full", "sample", "directional"), "mode")
    eps = V.check_eps(eps)
    if _is_network(net_or_fn):
        if grads is not None and Y_or_grads is None:
            raise TypeError("gradcheck(net, X, Y, grads=...): Y is required")
        V.check_bool(explain, "explain")
        return _check_network(net_or_fn, X_or_params, Y_or_grads, grads, l2, l1, keep_prob, seed, masks, step, eps,
                              mode, k, n_directions, indices, rng, _engine_options(engine_options), bool(explain))
    if callable(net_or_fn):
        if engine_options:
            raise ValueError("engine_options apply to the native engine (a Network), not to a cost function")
        g = grads if grads is not None else Y_or_grads
        if g is None:
            raise TypeError("gradcheck(cost_fn, params, grads): grads is required")
        if mode == "directional":
            raise ValueError("mode='directional' needs a Network; use mode='sample' for a cost function")
        return _check_function(net_or_fn, X_or_params, g, eps, mode, k, indices, rng)
    raise TypeError(f"gradcheck expects a dnnkit.Network or a callable J(params) -> float, "
                    f"got {type(net_or_fn).__name__}")


_ENGINE_OPTIONS = {"fast_path": True}


def _engine_options(opts):
    if opts is None:
        return dict(_ENGINE_OPTIONS)
    if not isinstance(opts, dict):
        raise TypeError(f"engine_options must be a dict, got {type(opts).__name__}")
    unknown = sorted(set(opts) - set(_ENGINE_OPTIONS))
    if unknown:
        raise ValueError(f"unknown engine_options {unknown}; known: {sorted(_ENGINE_OPTIONS)}")
    out = dict(_ENGINE_OPTIONS)
    for key, v in opts.items():
        out[key] = V.check_bool(v, f"engine_options[{key!r}]")
    return out


def _check_network_inputs(net, X, Y, l2, l1, keep_prob, seed, masks, step) -> dict:
    """Validated float64 inputs of a Network check and a float64 twin of the net at its parameters (a check in
    float32 would measure float32 rounding, not the gradient, and the user's net keeps its grads / last_cost:
    a check changes nothing). Shared by gradcheck, taylor_test and the mistake hypotheses."""
    dims = list(net.layer_dims)
    L = len(dims) - 1
    X = V.as_array(X, "X", np.float64, rows=dims[0])
    m = X.shape[1]
    Y = V.as_array(Y, "Y", np.float64, rows=dims[-1], cols=m)
    V.check_labels(Y, net.loss)
    l2, l1 = V.check_nonneg(l2, "l2"), V.check_nonneg(l1, "l1")
    keep = V.normalize_keep_prob(keep_prob, L)
    mlist = V.normalize_masks(masks, keep, dims, m, np.float64) if masks is not None else [None] * L
    missing = [l for l in range(L) if keep[l] < 1.0 and mlist[l] is None]
    if missing and seed is None:
        raise ValueError(
            f"dropout (keep_prob < 1 on layers {missing}) needs seed= (or masks=) for a gradient check: without "
            "them every evaluation of J draws new masks, so J(theta+eps) and J(theta-eps) are costs of different "
            "thinned networks and their difference is noise, not a derivative (the seeds: 'doesn't work with "
            "dropout'). With a seed the same masks are used for every perturbation and for the gradient.")
    seed = 0 if seed is None else V.check_seed(seed)
    step = V.check_step(step)
    theta = np.ascontiguousarray(net.theta, dtype=np.float64)
    kw = dict(l2=l2, l1=l1, keep_prob=keep, seed=seed, masks=masks, step=step)
    return _Inputs({"dims": dims, "L": L, "X": X, "Y": Y, "m": m, "l2": l2, "l1": l1, "keep": keep, "mlist": mlist,
                    "seed": seed, "step": step, "theta": theta, "kw": kw,
                    "_net": (net.hidden, net.output, net.loss, net.alpha)})


class _Inputs(dict):
    """The validated inputs of a Network check; ``["twin"]``, the float64 twin of the net at theta, is built on first
    use (a directional check of the network's own gradient never needs it: ~0.5 ms of a ~10 ms call)."""

    def __missing__(self, key):
        if key != "twin":
            raise KeyError(key)
        hidden, output, loss, alpha = self["_net"]
        twin = Network(self["dims"], hidden, output, loss, "float64", alpha=alpha)
        twin.theta = self["theta"]
        self["twin"] = twin
        return twin


def _check_network(net, X, Y, grads, l2, l1, keep_prob, seed, masks, step, eps, mode, k, n_directions, indices,
                   rng, engine_options=None, explain=True):
    prob = _check_network_inputs(net, X, Y, l2, l1, keep_prob, seed, masks, step)
    dims, X, Y, m, l2, l1 = prob["dims"], prob["X"], prob["Y"], prob["m"], prob["l2"], prob["l1"]
    keep, mlist, seed, step, theta = prob["keep"], prob["mlist"], prob["seed"], prob["step"], prob["theta"]
    n = theta.size
    reshaped = {}  # blocks given in another shape of the same size (named in their findings)
    if grads is None and mode == "directional":
        g = None  # the engine's cached pass computes it (Network.backward's pass and bits, one forward)
    elif grads is None:
        # the network's own backward, in float64, run on the twin
        twin = prob["twin"]
        twin.backward(X, Y, **prob["kw"])
        g = twin.grad_vector.astype(np.float64, copy=True)
    else:
        g = _flat_grads(grads, dims, n, m, reshaped)
    layout = _Layout.from_dims(dims, m, l2, l1)
    # the native problem, validated once and shared by every engine call of this check (its chunks)
    args = (_core.GradcheckProblem(dims, net.hidden, net.output, net.loss, float(net.alpha), theta, X, Y, keep, seed,
                                   step, [None if D is None else np.ascontiguousarray(D, dtype=np.float64)
                                          for D in mlist], l2, l1), eps)
    gdt = "float64" if grads is None else _grads_dtype(grads)
    if mode == "directional":
        report, g = _directional(args, g, layout, n_directions, rng, eps, gdt)
        return _note_reshaped(_name_mistakes(_verify_kinks(report, prob), prob, net, g, grads, explain), reshaped)
    idx = _select(n, indices, layout, mode, k, rng)
    opts = engine_options or _ENGINE_OPTIONS
    parts, done = _run_chunks(lambda sub: _core.gradcheck_coords(*args, sub, fast_path=opts["fast_path"],
                                                                 stats=True), idx)
    checked = idx[:done]
    cat = lambda i: np.concatenate([p[i] for p in parts]) if len(parts) != 1 else parts[0][i]  # noqa: E731
    report = GradcheckReport(mode=mode, eps=eps, layout=layout, indices=checked, approx=cat(0), grad=g[checked],
                             flags=cat(1), theta_vals=theta[checked], cost=float(parts[0][2]), grad_dtype=gdt)
    report.engine_stats = {key: sum(int(p[3][key]) for p in parts) for key in parts[0][3]}
    report.complete = done == idx.size  # False after Ctrl-C: missing_indices lists what was not checked
    report.missing_indices = idx[done:].copy()
    return _note_reshaped(_name_mistakes(_verify_kinks(report, prob), prob, net, g, grads, explain), reshaped)


def _note_reshaped(report, reshaped):
    """A block given in another shape of the same size (typically dW.T) is read in ITS C order; its finding
    then also says which shape came and which was expected."""
    for row in report.components:
        if row.name in reshaped:
            key, got, want = reshaped[row.name]
            row.finding = f"{row.finding}; grads[{key!r}] has shape {tuple(got)}, expected {tuple(want)}"
    return report


class _UnitVectors:
    """The unit vectors e_i (length n) of the given coordinates, as a sequence built one at a time on access."""

    def __init__(self, n: int, coords):
        self.n, self.coords = int(n), np.asarray(coords, dtype=np.int64)

    def __len__(self) -> int:
        return int(self.coords.size)

    def __getitem__(self, q: int) -> np.ndarray:
        e = np.zeros(self.n)
        e[self.coords[q]] = 1.0
        return e


def _verify_kinks(report, prob):
    """Kink-crossing coordinates / directions checked one-sided per example (dnnkit.kinks), not dropped."""
    bad = np.flatnonzero(report.flags != 0)
    if bad.size == 0:
        return report
    from . import kinks

    n = prob["theta"].size
    if report.mode == "directional":
        vecs = [report._dir_vectors[q] for q in bad]
    else:  # unit vectors built on demand: kinks.verify indexes only the ones it verifies (a zero-initialized
        # ReLU net flags every coordinate: 1e5 dense e_i of 1e5 entries would not fit in memory)
        vecs = _UnitVectors(n, report.indices[bad])
    vals, _, why, errs = kinks.verify(prob, vecs, errors=True)
    full_vals = np.full(report.approx.size, np.nan)
    full_errs = np.full(report.approx.size, np.nan)
    full_errs[bad] = errs
    full_why = [""] * report.approx.size
    full_vals[bad] = vals
    for q, w in zip(bad, why):
        full_why[q] = w
    report._set_kinks(full_vals, full_why, full_errs)
    return report


def _grads_dtype(grads) -> str:
    """'float32' when the given gradients (any of their arrays) are float32 / float16, else 'float64'."""
    arrs = grads.values() if isinstance(grads, dict) else [grads]
    for a in arrs:
        dt = getattr(a, "dtype", None)
        if dt is not None and np.dtype(dt).kind == "f" and np.dtype(dt).itemsize < 8:
            return "float32"
    return "float64"


def _name_mistakes(report, prob, net, g, grads, explain):
    """Test the mistake hypotheses (dnnkit.mistakes) when the check found a component wrong."""
    if not explain or all(c.verdict == "correct" for c in report.components) or not np.all(np.isfinite(g)):
        return report
    from . import mistakes

    tol = mistakes.MATCH_TOL_FLOAT32 if grads is not None and _grads_dtype(grads) == "float32" else mistakes.MATCH_TOL
    report._set_mistakes(mistakes.explain(prob, net, g, tol))
    return report


def _directional(args, g, layout, n_directions, rng, eps, grad_dtype="float64"):
    """(report, g). g None: the network's own gradient, computed by the engine's cached pass itself (one forward).
    One native call draws the directions from a 64-bit seed taken from ``rng`` (Philox4x32-10 + ziggurat, threads
    on blocks: the same directions for the same rng, any thread count), forms g . d and the differences."""
    n_directions = V.check_positive_int(n_directions, "n_directions")
    gen = V.as_generator(rng)
    comps = layout.comps
    r = int(n_directions)
    seed = int(gen.integers(0, 2 ** 63))
    # row t of dirs holds the t-th unit direction of EVERY component (components are disjoint), so one native call
    # evaluates all len(comps) * r localized directions without a dense (K, n) matrix; result index ci * r + t
    approx, kinks, J0, gd, dirs, g = _core.gradcheck_directional(
        *args, r, seed, None if g is None else np.ascontiguousarray(g, dtype=np.float64))
    n = dirs.shape[1]
    names = [name for name, *_ in comps for _ in range(r)]
    flags = (np.asarray(kinks) > 0).astype(np.uint8) * KINK_ACT
    report = GradcheckReport(mode="directional", eps=eps, layout=layout, indices=np.arange(len(names)),
                             approx=approx, grad=gd, flags=flags, theta_vals=None, dir_components=names,
                             cost=float(J0), grad_dtype=grad_dtype)

    class _Dirs:  # direction ci * r + t as a full-length vector, built on demand (kink verification)
        def __getitem__(self, q):
            ci, t = divmod(int(q), r)
            v = np.zeros(n)
            _, start, stop, _, _ = comps[ci]
            v[start:stop] = dirs[t, start:stop]
            return v
    report._dir_vectors = _Dirs()
    return report, g


def _prepare_function(cost_fn, params, grads):
    """(layout, theta, g, J) of a cost-function check: J(flat theta) -> float."""
    if isinstance(params, dict):
        layout = _Layout.from_dict(params)
        keys = [c[0] for c in layout.comps]
        shapes = {c[0]: c[3] for c in layout.comps}
        if not keys:
            raise ValueError("params is an empty dict: nothing to check")
        theta = np.concatenate([_real64(params[kk], f"params[{kk!r}]").reshape(-1) for kk in keys])
        if isinstance(grads, dict):
            from . import _validation as V

            gkeys = V.grad_keys(grads, keys, "grads")  # missing or extra (typo) keys
            parts = []
            for kk in keys:
                gk = _real64(grads[gkeys[kk]], f"grads[{gkeys[kk]!r}]")
                if gk.size != np.prod(shapes[kk], dtype=int):
                    from .mistakes import shape_hint

                    hint = shape_hint("d" + kk, gk.shape, shapes[kk])
                    raise ValueError(f"grads for {kk!r} has shape {gk.shape}, expected {shapes[kk]}"
                                     + (f" ({hint})" if hint else ""))
                parts.append(gk.reshape(-1))
            g = np.concatenate(parts)
        else:
            g = _real64(grads, "grads").reshape(-1)

        def J(th):
            p = {}
            for c in layout.comps:
                p[c[0]] = th[c[1]:c[2]].reshape(c[3])
            return _cost_value(cost_fn(p))
    else:
        theta = np.array(_real64(params, "params"), dtype=np.float64)  # a copy: the caller's array is never touched
        shape = theta.shape
        theta = theta.reshape(-1)
        if theta.size == 0:
            raise ValueError("params is empty: nothing to check")
        layout = _Layout([("theta", 0, theta.size, shape if len(shape) else (1,), None)])
        g = _real64(grads, "grads").reshape(-1)

        def J(th):
            return _cost_value(cost_fn(th.reshape(shape)))
    if g.size != theta.size:
        raise ValueError(f"grads has {g.size} entries, params have {theta.size}")
    return layout, theta, g, J


def _check_function(cost_fn, params, grads, eps, mode, k, indices, rng):
    layout, theta, g, J = _prepare_function(cost_fn, params, grads)
    idx = _select(theta.size, indices, layout, mode, k, rng)
    zeros = np.zeros_like(theta)
    parts, done = _run_chunks(lambda sub: (ref.gradient_check(J, theta, zeros, eps, indices=sub)[1],), idx, first=64)
    checked = idx[:done]
    report = GradcheckReport(mode=mode, eps=eps, layout=layout, indices=checked,
                             approx=np.concatenate([p[0] for p in parts]), grad=g[checked],
                             flags=np.zeros(done, np.uint8), theta_vals=None, engine="python loop")
    report.complete = done == idx.size
    report.missing_indices = idx[done:].copy()
    return report


# Ctrl-C during a check keeps the finished work: the coordinates go to the engine in chunks (each coordinate's
# result depends on that coordinate alone, so any chunking gives the same numbers bit for bit). The first chunk
# (_CHUNK_FIRST coordinates) costs about one engine set-up (forward caches, per-unit preparation) and bounds it;
# later chunks last about max(_CHUNK_SECONDS, _CHUNK_SETUP_FACTOR x that set-up), so the repeated set-ups cost at
# most ~1/_CHUNK_SETUP_FACTOR of a long check, and a rest that fits in two chunks goes in one call (a short
# check: 2-3 calls). An interrupt loses at most the chunk in flight; the finished chunks' report is returned,
# marked incomplete (``report.complete`` False, ``report.missing_indices``; resume with
# ``indices=report.missing_indices`` and ``report.merge(rest)``).
_CHUNK_SECONDS = 0.5
_CHUNK_FIRST = 64
_CHUNK_SETUP_FACTOR = 20


def _run_chunks(run, idx, first=None):
    """-> (results of run(chunk) for the finished chunks, number of coordinates they cover). A KeyboardInterrupt
    (from the engine's signal poll or between chunks) ends the loop; it propagates if no chunk had finished."""
    parts = []
    try:
        pos, size = 0, _CHUNK_FIRST if first is None else first
        setup = None
        while True:  # at least one call (an empty selection gives an empty report, as before)
            t = time.perf_counter()
            parts.append(run(idx[pos:pos + size]))
            dt = time.perf_counter() - t
            pos += min(size, idx.size - pos)
            if pos >= idx.size:
                break
            if setup is None:  # the first, small call: about one set-up; its per-coordinate rate is pessimistic
                setup, per = dt, dt / size
            else:
                per = max(dt - setup, dt / 16) / size
            target = max(_CHUNK_SECONDS, _CHUNK_SETUP_FACTOR * setup)
            size = int(min(max(target / max(per, 1e-12), 64), 64 * size))
            if idx.size - pos <= 2 * size:
                size = idx.size - pos
    except KeyboardInterrupt:
        if not parts:
            raise
    done = sum(len(p[0]) for p in parts)
    return parts, done


def _cost_value(v) -> float:
    """cost_fn's result as a float (a Python/NumPy number, a size-1 array, a 0-d tensor), or a TypeError that
    says what cost_fn returned instead."""
    if isinstance(v, np.ndarray) and v.size == 1 and v.dtype.kind in "iuf":
        return float(v.reshape(()))
    if not isinstance(v, (str, bytes, bool, np.bool_, complex, np.complexfloating, np.ndarray)):
        try:
            return float(v)
        except (TypeError, ValueError, RuntimeError):
            pass
    what = f"ndarray of shape {v.shape} and dtype {v.dtype}" if isinstance(v, np.ndarray) else \
        f"{type(v).__name__} {v!r}"[:80]
    raise TypeError(f"cost_fn must return a real number (the cost J), got {what}")


def assert_gradients_close(*args, max_difference: float | None = None, **kwargs) -> GradcheckReport:
    """``gradcheck(*args, **kwargs)`` for a pytest suite: raises AssertionError with the report's table unless
    the verdict is "correct" (or, with ``max_difference``, unless the kink-free difference is below it)."""
    report = gradcheck(*args, **kwargs)
    ok = report.verdict == "correct" if max_difference is None else \
        (report.difference_reliable < max_difference and
         all(c.difference < max_difference for c in report.components))
    ok = ok and report.complete  # an interrupted check verified only part of the gradient
    if not ok:
        raise AssertionError("gradients do not match the centered differences\n" + str(report))
    return report
