"""Callbacks for :func:`dnnkit.training.fit`.

The protocol (every method optional; plain objects work, subclassing :class:`Callback` is a convenience):

``on_train_begin(net, history)``
    once, before the first epoch (the parameters are the initial ones).
``on_epoch_end(epoch, net, history) -> bool``
    after every *reported* epoch (every ``log_every`` epochs and the last; ``epoch`` counts finished
    epochs from 1; the history already holds that epoch's row). Return True to stop training.
``on_train_end(net, history)``
    once at the end, also after early stopping or an interruption.

Callbacks run in the order given, then ``early_stopping``. They run in Python between native intervals,
so they cost nothing per mini-batch.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import _validation as V
from .gradient_check import gradcheck

__all__ = ["Callback", "EarlyStopping", "GradientCheck"]


class Callback:
    """Base class with no-op hooks (optional: any object with these methods is a callback)."""

    def on_train_begin(self, net, history) -> None:
        pass

    def on_epoch_end(self, epoch: int, net, history) -> bool:
        return False

    def on_train_end(self, net, history) -> None:
        pass


class EarlyStopping(Callback):
    """Stop when ``monitor`` (``"dev_cost"`` or ``"dev_error"``, or ``"train_cost"``) has not improved by
    more than ``min_delta`` for ``patience`` consecutive reported epochs.

    With ``restore_best=True`` the parameters of the best epoch are copied back bit for bit at the end of
    training (whether it stopped early, ran to the end or was interrupted); ``history.best_epoch`` names it.
    Patience counts reported epochs (every ``log_every`` epochs of fit).
    """

    MONITORS = ("dev_cost", "dev_error", "train_cost", "train_error")

    def __init__(self, monitor: str = "dev_cost", patience: int = 10, min_delta: float = 0.0,
                 restore_best: bool = True):
        V.check_choice(monitor, self.MONITORS, "monitor")
        patience = V.check_positive_int(patience, "patience", minimum=0)
        min_delta = V.check_nonneg(min_delta, "min_delta")
        restore_best = V.check_bool(restore_best, "restore_best")
        self.monitor: str = monitor
        self.patience: int = int(patience)
        self.min_delta: float = float(min_delta)
        self.restore_best: bool = bool(restore_best)
        self._reset()

    def _reset(self) -> None:
        self.best = math.inf
        self.best_epoch: int | None = None
        self.best_theta: np.ndarray | None = None
        self.wait = 0

    def _check(self, net, has_validation: bool) -> None:
        if self.monitor.startswith("dev_") and not has_validation:
            raise ValueError(f"EarlyStopping(monitor={self.monitor!r}) needs validation=(X_dev, Y_dev)")
        if self.monitor.endswith("_error") and net.loss == "mse":
            raise ValueError(f"EarlyStopping(monitor={self.monitor!r}): a regression net has no error; "
                             "monitor a cost")

    def get_config(self) -> dict:
        return dict(monitor=self.monitor, patience=self.patience, min_delta=self.min_delta,
                    restore_best=self.restore_best)

    def on_train_begin(self, net, history) -> None:
        self._reset()

    def on_epoch_end(self, epoch: int, net, history) -> bool:
        value = history[self.monitor][-1]
        if value < self.best - self.min_delta:
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best:
                self.best_theta = net.theta.copy()  # exact copy of the flat buffer
            history.best_epoch = epoch
            return False
        self.wait += 1
        return self.wait >= self.patience

    def on_train_end(self, net, history) -> None:
        if self.restore_best and self.best_theta is not None:
            net.theta[...] = self.best_theta  # in place: the params views stay valid; bit-exact
        history.best_epoch = self.best_epoch

    def __repr__(self) -> str:
        return ("EarlyStopping(" + ", ".join(f"{k}={v!r}" for k, v in self.get_config().items()) + ")")


class GradientCheck(Callback):
    """Run :func:`dnnkit.gradcheck` at initialization (epoch 0, before training) and after the epochs in
    ``at`` — the seeds' advice: check at random initialization and again after some training, without
    dropout, with the regularization term included.

    X, Y: the data to check on (default: the first ``max_examples`` training examples). l2 / l1: default to
    the fit's values. Extra keyword arguments go to ``dnnkit.gradcheck``. Each check appends a row
    ``{"epoch", "difference", "verdict", "report"}`` to ``history.gradchecks``; with
    ``raise_on_failure=True`` a verdict other than "correct" stops training with ``AssertionError``.
    An epoch in ``at`` that is not a reported epoch (``log_every`` > 1) is checked at the next reported one.
    """

    def __init__(self, at=(0, 10), X=None, Y=None, max_examples: int = 64, l2=None, l1=None,
                 raise_on_failure: bool = False, **gradcheck_kwargs):
        try:
            at = sorted({int(a) for a in (at if hasattr(at, "__iter__") else (at,))})
        except (TypeError, ValueError):
            raise TypeError(f"at must be an epoch or a sequence of epochs, got {at!r}") from None
        if not at or at[0] < 0:
            raise ValueError(f"at must list epochs >= 0, got {at!r}")
        if (X is None) != (Y is None):
            raise ValueError("give both X and Y, or neither (to use the training data)")
        max_examples = V.check_positive_int(max_examples, "max_examples")
        self.at: list[int] = at
        self.X: Any = X
        self.Y: Any = Y
        self.max_examples: int = int(max_examples)
        self.l2: float | None = l2
        self.l1: float | None = l1
        self.raise_on_failure: bool = bool(raise_on_failure)
        self.kwargs: dict = gradcheck_kwargs
        self._pending: list[int] = []

    def _run(self, epoch: int, net, history) -> None:
        if self.X is not None:
            X, Y = self.X, self.Y
        else:
            X, Y = history.train_data
            X, Y = X[:, : self.max_examples], Y[:, : self.max_examples]
        l2 = history.config.get("l2", 0.0) if self.l2 is None else self.l2
        l1 = history.config.get("l1", 0.0) if self.l1 is None else self.l1
        kw = dict(self.kwargs)
        kw.setdefault("l2", l2)
        if l1:
            kw.setdefault("l1", l1)
        report = gradcheck(net, X, Y, **kw)  # no dropout: keep_prob defaults to 1 (the seeds' advice)
        row = {"epoch": int(epoch), "difference": float(report), "verdict": str(report.verdict),
               "report": report}
        history.gradchecks.append(row)
        if self.raise_on_failure and row["verdict"] != "correct":
            raise AssertionError(f"gradient check at epoch {epoch}: {row['verdict']} "
                                 f"(difference {row['difference']:.3g})\n{report}")

    def on_train_begin(self, net, history) -> None:
        self._pending = [a for a in self.at if a > 0]
        if 0 in self.at:
            self._run(0, net, history)

    def on_epoch_end(self, epoch: int, net, history) -> bool:
        if self._pending and epoch >= self._pending[0]:
            self._pending = [a for a in self._pending if a > epoch]
            self._run(epoch, net, history)
        return False
