"""Verifying the coordinates whose +-eps crosses a kink, instead of dropping them.

A ReLU / leaky-ReLU unit whose pre-activation changes sign inside +-eps (or sits exactly on 0) makes the
centered difference of that coordinate meaningless: J is not differentiable there, and the backprop's value is a
convention, g'(0) = 0 (leaky: alpha), i.e. the derivative of the branch Z <= 0. Such a coordinate is still
checkable, per example: J = (1/m) sum_j loss_j + reg, and an example's loss crosses a kink only on one side (or
none) in most cases. For each example j this module takes

    both sides free of kinks:   the centered difference (loss_j(+h) - loss_j(-h)) / 2h
    one side free (side s):     the second-order one-sided difference (-3 loss_j(0) + 4 loss_j(s h) - loss_j(2 s h)) / (2 s h)
    neither side, at any h:     the coordinate is not verified

with h = 1e-5, else 1e-6, else 1e-7 per example (the largest step whose side stays on the branch of theta; "the
branch" is the on/off pattern of every hidden unit of that example, Z > 0, so Z = 0 counts as off, the
convention's side). Truncation is O(h^2) and rounding u |loss_j| / h for each example's loss on its own (not a
total J of size ~1 subtracted from another), so a verified coordinate is as accurate as a two-sided one. The
regularization part's derivative is added in closed form ((l2/m) W, (l1/(2m)) sign(W)). Per-example losses come
from native forward passes of a float64 twin (the same masks: dropout is keyed by (seed, step, layer, unit,
example), not by theta).

Each verified value also gets an error estimate (``verify(..., errors=True)``): per example, the truncation of
the one-sided formula measured from the steps it tried, (4/3)|D(h) - D(h/2)| (one more forward pass per side; the
h^2 term shrinks 4x with h/2), plus its rounding, ROUND_ULPS u (|loss_j| + sum |Z^[L]_j|) times the formula's
coefficient sum over its step (8/(2h) one-sided, 2/(2h) centered), averaged over the examples like the value. The
report (gradient_check) treats |a - g| at or below that estimate as agreement (the one-sided value cannot tell
them apart), "unverified" when the estimate is itself too large to decide (above correct_below x the check's
gradient scale), and judges every other one-sided value by the seeds' difference as before, so a correct block
whose true gradient is 0 is "correct" while a wrong value larger than the estimate is still "bug".

The cost is a handful of forward passes per kink coordinate (up to 18 with the error estimates); at most
``MAX_VERIFIED`` coordinates of one check are verified this way, and fewer on large nets: as many as
``WORK_SECONDS`` of estimated forward passes allow (``work_budget``: from the net's size only, so the same check
always verifies the same coordinates), the rest stay unverified (the report says so). A check where nearly every
coordinate crosses a kink (a ReLU net whose parameters are all zero: every unit sits on 0) thus stays a few
seconds, not minutes.
"""
from __future__ import annotations

import numpy as np

__all__ = ["verify", "work_budget", "MAX_VERIFIED", "STEPS", "ROUND_ULPS"]

MAX_VERIFIED = 2000
MIN_VERIFIED = 20        # the work budget never verifies fewer coordinates than this
WORK_SECONDS = 3.0       # estimated seconds of forward passes one check may spend on verification
_FORWARD_FLOPS_PER_S = 2e10   # a deliberately round estimate of a native float64 forward pass's speed here
_FORWARD_OVERHEAD_S = 1e-4    # and of one evaluation's Python + call overhead
_FORWARDS_PER_COORD = 18      # the most one coordinate takes: 3 steps x 2 sides x (2 + 1 for the error estimate)
STEPS = (1e-5, 1e-6, 1e-7)
ROUND_ULPS = 8.0   # a per-example loss's rounding, in units of u (|loss_j| + sum |Z^[L]_j|): a few dozen operations
_U = float(np.finfo(np.float64).eps)


def _per_example_loss(ZL, AL, Y, loss):
    if loss == "bce":
        return np.sum(np.maximum(ZL, 0) - ZL * Y + np.log1p(np.exp(-np.abs(ZL))), axis=0)
    if loss == "ce":
        zmax = np.max(ZL, axis=0, keepdims=True)
        lse = zmax + np.log(np.sum(np.exp(ZL - zmax), axis=0, keepdims=True))
        return np.sum(Y, axis=0) * lse[0] - np.sum(Y * ZL, axis=0)
    return 0.5 * np.sum((AL - Y) ** 2, axis=0)


def work_budget(dims, m: int) -> int:
    """How many kink coordinates one check verifies on a net of these layer sizes and m examples: MAX_VERIFIED,
    or fewer where their forward passes would take more than about WORK_SECONDS (never fewer than MIN_VERIFIED).
    A function of the sizes only (not of a clock), so a check's report does not depend on the machine's load."""
    flops = 2.0 * m * sum(int(dims[l]) * int(dims[l - 1]) for l in range(1, len(dims)))
    per_coord = _FORWARDS_PER_COORD * (flops / _FORWARD_FLOPS_PER_S + _FORWARD_OVERHEAD_S)
    return int(max(MIN_VERIFIED, min(MAX_VERIFIED, WORK_SECONDS // per_coord)))


def verify(prob: dict, vectors, budget: int | None = None, errors: bool = False):
    """Directional derivatives of J along each vector of ``vectors`` (a sequence of full-length arrays, e_i for a
    coordinate; indexed only for the first ``budget`` — default ``work_budget(dims, m)`` — so it may be lazy),
    verified per example as the module docstring says. Returns (values, n_one_sided_examples, reasons): values[q]
    is NaN where the direction could not be verified; reasons[q] says why ('' when verified). With
    ``errors=True`` a fourth array: each value's error estimate (module docstring; inf where none could be made,
    NaN where not verified)."""
    twin, X, Y, kw = prob["twin"], prob["X"], prob["Y"], prob["kw"]
    L, m, dims = prob["L"], prob["m"], prob["dims"]
    if budget is None:
        budget = work_budget(dims, m)
    theta = prob["theta"].copy()
    l2, l1 = prob["l2"], prob["l1"]
    # which entries of theta are weights (regularized)
    is_w = np.zeros(theta.size, dtype=bool)
    off = 0
    for l in range(1, L + 1):
        nw = dims[l] * dims[l - 1]
        is_w[off:off + nw] = True
        off += nw + dims[l]
    fwd = dict(keep_prob=kw["keep_prob"], seed=kw["seed"], masks=kw["masks"], step=kw["step"])
    kinked = twin.hidden in ("relu", "leaky_relu")

    def evaluate(th):
        twin.theta = th
        AL, cache = twin.forward(X, **fwd)
        loss = _per_example_loss(cache[f"Z{L}"], AL, Y, twin.loss)
        scale = np.abs(loss) + np.sum(np.abs(cache[f"Z{L}"]), axis=0)   # the size of the terms that cancel
        if kinked:
            pat = np.concatenate([cache[f"Z{l}"] > 0 for l in range(1, L)], axis=0) if L > 1 else \
                np.zeros((0, m), dtype=bool)
        else:
            pat = np.zeros((0, m), dtype=bool)
        return loss, pat, scale

    n = len(vectors)
    values = np.full(n, np.nan)
    errs = np.full(n, np.nan)
    one_sided = np.zeros(n, dtype=np.int64)
    reasons = [""] * n
    try:
        loss0, pat0, sc0 = evaluate(theta)
        for q in range(n):
            if q >= budget:  # before vectors[q]: a lazy sequence builds nothing for these
                reasons[q] = (f"not attempted: more than {budget} kink coordinates in one check (the verification's "
                              f"budget for this net's size)")
                continue
            v = np.asarray(vectors[q], dtype=np.float64)
            d = np.full(m, np.nan)
            e = np.full(m, np.nan)
            for h in STEPS:
                todo = np.isnan(d)
                if not todo.any():
                    break
                side = {}
                for s in (1, -1):
                    l1_, p1, s1 = evaluate(theta + s * h * v)
                    l2_, p2, s2 = evaluate(theta + 2 * s * h * v)
                    ok = np.all(p1 == pat0, axis=0) & np.all(p2 == pat0, axis=0)
                    side[s] = (ok, l1_, l2_, np.maximum(np.maximum(sc0, s1), s2))
                both = side[1][0] & side[-1][0] & todo
                d[both] = (side[1][1][both] - side[-1][1][both]) / (2 * h)
                e[both] = ROUND_ULPS * _U * np.maximum(side[1][3], side[-1][3])[both] / h
                for s in (1, -1):
                    ok, la, lb, sc = side[s]
                    only = ok & ~side[-s][0] & todo
                    d[only] = (-3 * loss0[only] + 4 * la[only] - lb[only]) / (2 * s * h)
                    one_sided[q] += int(only.sum())
                    if errors and only.any():
                        # the same formula on h/2 (needs f(s h/2) only): its truncation is 4x smaller
                        lh, ph, _ = evaluate(theta + 0.5 * s * h * v)
                        d_half = (-3 * loss0 + 4 * lh - la) / (s * h)
                        trunc = np.where(np.all(ph == pat0, axis=0), 4.0 / 3.0 * np.abs(d - d_half), np.inf)
                        e[only] = trunc[only] + ROUND_ULPS * _U * sc[only] * 8.0 / (2 * h)
            if np.isnan(d).any():
                bad = int(np.isnan(d).sum())
                reasons[q] = (f"{bad} example(s) cross a kink on both sides within {STEPS[-1]:g}")
                continue
            reg = 0.0
            if l2:
                reg += l2 / m * float(np.sum(theta[is_w] * v[is_w]))
            if l1:
                reg += l1 / (2 * m) * float(np.sum(np.sign(theta[is_w]) * v[is_w]))
            values[q] = float(np.mean(d)) + reg
            errs[q] = float(np.mean(e))
    finally:
        twin.theta = theta
    if errors:
        return values, one_sided, reasons, errs
    return values, one_sided, reasons
