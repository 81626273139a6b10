"""Plots (the ``plot`` extra: ``pip install 'dnnkit[plot]'``). matplotlib is imported inside each function.

Every function draws one figure and returns it, or, given ``path``, saves it as PNG, closes it and returns
the path. Without a display (no ``$DISPLAY`` on Linux, or ``MPLBACKEND`` unset in a headless run) the
non-interactive Agg backend is selected before pyplot is first imported.

- :func:`cost_curves`        train (solid) / dev (dashed) cost per epoch, one History or {label: History}
- :func:`decision_boundary`  the predicted regions of a 2-D classifier with the data on top
- :func:`decision_boundaries` one panel per {label: net}
- :func:`gradient_norms`     per-layer ||dW[l]|| per epoch (vanishing / exploding during training)
- :func:`init_comparison`    cost curves and accuracies of several initializations
- :func:`propagation`        per-layer activation scale of ``dk.diagnose.propagation`` reports
- :func:`gradcheck_report`   per-component bars of a gradient check (delegates to ``report.plot()``)
"""
from __future__ import annotations

import math
import os
import sys

import numpy as np

__all__ = ["cost_curves", "decision_boundary", "decision_boundaries", "gradient_norms", "init_comparison",
           "propagation", "gradcheck_report"]


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ImportError("dnnkit's plots need matplotlib: pip install 'dnnkit[plot]' (or pip install matplotlib)") \
            from None
    if "matplotlib.pyplot" not in sys.modules and not os.environ.get("MPLBACKEND") and \
            sys.platform.startswith("linux") and not os.environ.get("DISPLAY") and \
            not os.environ.get("WAYLAND_DISPLAY"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _decorate(ax, xlabel, ylabel, title) -> None:
    """Axis labels, title, legend and a light grid: the look shared by the line plots."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)


def _finish(fig, path):
    if path is None:
        return fig
    path = os.fspath(path)
    d = os.path.dirname(path)
    if d:
        os.makedirs(d, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return path


def _histories(h):
    if isinstance(h, dict):
        return dict(h)
    return {"": h}


def _series(h, name):
    v = np.asarray(h[name] if not hasattr(h, name) else getattr(h, name), dtype=np.float64)
    return v


def cost_curves(history, path=None, title: str | None = None, log: bool | None = None):
    """Train (solid) and dev (dashed, when recorded) cost against the epoch; ``history`` is a History (or
    anything with ``epoch``, ``train_cost``, ``dev_cost``) or a ``{label: History}`` dict. ``log``: log
    y axis (default: when the costs span more than two decades)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    lo, hi = math.inf, 0.0
    for i, (label, h) in enumerate(_histories(history).items()):
        c = colors[i % len(colors)]
        ep = _series(h, "epoch")
        tr = _series(h, "train_cost")
        ax.plot(ep, tr, color=c, lw=1.5, label=f"{label} train".strip())
        dv = _series(h, "dev_cost") if len(getattr(h, "dev_cost", [])) else np.array([])
        if dv.size and np.isfinite(dv).any():
            ax.plot(ep, dv, color=c, lw=1.5, ls="--", label=f"{label} dev".strip())
        finite = np.concatenate([tr, dv])[np.isfinite(np.concatenate([tr, dv]))]
        if finite.size and finite.max() > 0:
            pos = finite[finite > 0]
            lo, hi = min(lo, pos.min() if pos.size else lo), max(hi, finite.max())
        best = getattr(h, "best_epoch", None)
        if best:
            ax.axvline(best, color=c, lw=0.8, ls=":")
    if log is None:
        log = hi > 0 and lo < math.inf and hi / lo > 100
    if log:
        ax.set_yscale("log")
    _decorate(ax, "epoch (iteration for full batch)", "cost J", title or "cost")
    return _finish(fig, path)


def _predict_grid(net, xx, yy, normalizer=None):
    G = np.vstack([xx.ravel(), yy.ravel()])
    if normalizer is not None:
        G = normalizer.transform(G)
    P = net.predict(G) if hasattr(net, "predict") else net(G)
    P = np.asarray(P)
    if P.ndim == 2:
        P = P[0] if P.shape[0] == 1 else np.argmax(P, axis=0)
    return P.reshape(xx.shape)


def _labels(Y):
    Y = np.asarray(Y)
    if Y.ndim == 2 and Y.shape[0] > 1:
        return np.argmax(Y, axis=0)
    return Y.reshape(-1)


def _draw_boundary(ax, net, X, Y, normalizer=None, title=None, resolution=200):
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] != 2:
        raise ValueError(f"decision_boundary needs 2-D inputs X of shape (2, m), got {X.shape}")
    pad_x = 0.1 * (np.ptp(X[0]) or 1.0)
    pad_y = 0.1 * (np.ptp(X[1]) or 1.0)
    xx, yy = np.meshgrid(np.linspace(X[0].min() - pad_x, X[0].max() + pad_x, resolution),
                         np.linspace(X[1].min() - pad_y, X[1].max() + pad_y, resolution))
    Z = _predict_grid(net, xx, yy, normalizer)
    ax.contourf(xx, yy, Z, alpha=0.35, cmap="coolwarm" if Z.max() <= 1 else "tab10")
    ax.scatter(X[0], X[1], c=_labels(Y), s=9, cmap="coolwarm" if _labels(Y).max() <= 1 else "tab10",
               edgecolors="k", linewidths=0.2)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)


def decision_boundary(net, X, Y, path=None, normalizer=None, title: str | None = None, resolution: int = 200):
    """Predicted regions of a classifier on 2-D inputs with the points (X (2, m), Y labels, 0/1 row or
    one-hot) on top. ``net``: a Network (``predict``) or a callable mapping (2, k) inputs to labels.
    ``normalizer`` (default ``net.normalizer``) is applied to the grid: X is in raw units."""
    plt = _pyplot()
    if normalizer is None:
        normalizer = getattr(net, "normalizer", None)
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    _draw_boundary(ax, net, X, Y, normalizer, title or "decision boundary", resolution)
    return _finish(fig, path)


def decision_boundaries(nets: dict, X, Y, path=None, suptitle: str | None = None, resolution: int = 150):
    """One decision-boundary panel per ``{label: net}``, side by side, on the same data."""
    plt = _pyplot()
    n = len(nets)
    fig, axes = plt.subplots(1, n, figsize=(3.6 * n, 3.6), squeeze=False)
    for ax, (label, net) in zip(axes[0], nets.items()):
        _draw_boundary(ax, net, X, Y, getattr(net, "normalizer", None), label, resolution)
    if suptitle:
        fig.suptitle(suptitle)
    return _finish(fig, path)


def gradient_norms(history, path=None, title: str | None = None):
    """Per-layer mean ||dW[l]||_F per epoch (``history.grad_norms``), log scale: layers whose gradient is
    orders of magnitude below the others are learning nothing (vanishing), above them exploding."""
    plt = _pyplot()
    G = np.asarray(history.grad_norms, dtype=np.float64)
    if G.ndim != 2 or G.size == 0:
        raise ValueError("the history has no grad_norms to plot (train first)")
    ep = np.asarray(history.epoch, dtype=np.float64)
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for l in range(G.shape[1]):
        ax.plot(ep, np.maximum(G[:, l], 1e-300), lw=1.4, label=f"||dW{l + 1}||")
    ax.set_yscale("log")
    _decorate(ax, "epoch", "gradient norm (mean over the epoch's steps)", title or "per-layer gradient norms")
    return _finish(fig, path)


def init_comparison(histories: dict, rows=None, path=None, title: str | None = None):
    """Cost curves of several initializations (``{label: History}``) and, given ``rows`` (dicts with keys
    ``init``, ``train acc``, ``test acc`` as in ``experiments.initialization``), their accuracies."""
    plt = _pyplot()
    ncol = 2 if rows else 1
    fig, axes = plt.subplots(1, ncol, figsize=(5.4 * ncol, 3.8), squeeze=False)
    ax = axes[0][0]
    for label, h in histories.items():
        ax.plot(h.epoch, np.maximum(np.asarray(h.train_cost, dtype=np.float64), 1e-12), lw=1.5, label=label)
    ax.set_yscale("log")
    _decorate(ax, "iteration", "training cost", "cost by initialization")
    if rows:
        ax2 = axes[0][1]
        labels = [r["init"] for r in rows]
        x = np.arange(len(rows))
        ax2.bar(x - 0.2, [r["train acc"] for r in rows], 0.4, label="train")
        ax2.bar(x + 0.2, [r["test acc"] for r in rows], 0.4, label="test")
        ax2.axhline(0.5, color="gray", ls=":", lw=1)
        ax2.set_xticks(x)
        ax2.set_xticklabels(labels)
        ax2.set_ylim(0, 1.05)
        ax2.set_ylabel("accuracy")
        ax2.set_title("accuracy")
        ax2.legend(fontsize=8, loc="lower right")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _finish(fig, path)


def propagation(reports: dict, path=None, title: str | None = None):
    """RMS of the activations A[l] / RMS(x) per layer for ``{label: PropagationReport}`` (log scale)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for label, r in reports.items():
        a = np.asarray(r.activation_scale, dtype=np.float64)
        rel = a / a[0] if a[0] > 0 else a
        with np.errstate(invalid="ignore"):
            rel = np.where(np.isfinite(rel) & (rel > 0), rel, np.nan)
        ax.plot(np.arange(len(rel)), np.clip(rel, 1e-30, 1e30), marker=".", lw=1.2, label=label)
    ax.set_yscale("log")
    ax.axhline(1.0, color="gray", lw=0.8, ls=":")
    ax.set_xlabel("layer l")
    ax.set_ylabel("RMS(A[l]) / RMS(x)")
    ax.set_title(title or "signal scale through the layers")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _finish(fig, path)


def gradcheck_report(report, path=None):
    """Per-component bars of a ``dk.gradcheck`` report (``report.plot()``), saved to ``path`` if given."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(4.5, 0.8 * len(report.components) + 2.5), 3.4))
    report.plot(ax=ax)
    fig.tight_layout()
    return _finish(fig, path)
