"""Training: :func:`fit` runs the whole training loop natively and returns a :class:`History`.

The native trainer (``dnnkit._core.Trainer64/32``, ``cpp/dnnkit/train.hpp``) runs epochs x mini-batches —
batch gathering through a seeded permutation, dropout masks, forward, backward, optimizer update — with
the GIL released, and records the :class:`History` itself (``cpp/dnnkit/train_history.hpp``): every
reported epoch's training statistics, the validation pass and the time, and ``early_stopping`` when it is a
plain :class:`dnnkit.callbacks.EarlyStopping`. Python is entered only when something needs it: a user
callback (once per reported epoch, as the callback protocol says), a progress bar (at most ~10 times a
second), or an interruption. Without those a whole ``fit`` is one native call.

Definitions (what the numbers in a :class:`History` mean)
    train_cost / train_error   ``train_eval="running"`` (default): the mean over the epoch's mini-batches,
        weighted by their sizes, of the cost J (with regularization, dropout on) and of the error that each
        step computed *before* its update — free, and what the course's ``costs`` list and Keras' training
        metrics show. ``train_eval="full"``: a full pass over the training set, no dropout, with the
        parameters at the end of the epoch (J with regularization).
    dev_cost / dev_error       a full pass over ``validation`` with the parameters at the end of the epoch,
        no dropout, no regularization term (the data cost). NaN without validation data.
    error                      bce: the fraction of wrong output entries at threshold 0.5; ce: the fraction
        of wrong argmax classes; mse: NaN (regression).
    grad_norms                 per layer l = 1..L, the mean over the epoch's steps of ||dW[l]||_F.
    time                       seconds since fit started, at the end of the reported epoch.
Each row is one reported epoch (every ``log_every`` epochs and the last one); ``epoch`` counts finished
epochs (1-based). The native loop gathers training statistics only for the epochs it reports (unreported
full-batch steps skip the cost altogether), so when an interruption lands inside a reporting interval of
``log_every > 1``, the row of the last finished epoch carries NaN train_cost / train_error / grad_norms
(its dev metrics are computed as usual). An epoch is one pass over the data: with ``batch_size=None`` (full batch) one epoch is one
gradient step, as the course's "iterations".

Randomness: with ``seed`` fixed, training is reproducible bit for bit and independent of the thread count.
Dropout masks come from the counter-based RNG keyed by ``(seed, step, layer, unit, example)`` with ``step``
the global step counter of this fit call (0, 1, ...); mini-batch shuffles are a permutation per epoch keyed
by ``(seed, epoch)``. Each fit call starts its step counter and optimizer state afresh.

Interruption (Ctrl-C): training stops at the next mini-batch boundary; the network keeps the parameters of
the last *finished* epoch, the history keeps every finished epoch and ``history.interrupted`` is True. With
``on_interrupt="stop"`` (default) fit then returns the history normally (as PyTorch Lightning does);
with ``on_interrupt="raise"`` it re-raises ``KeyboardInterrupt`` after cleaning up, with the history
attached as ``exc.history``.

A callback that raises (in ``on_train_begin``, ``on_epoch_end`` or ``on_train_end``; likewise a failing
validation pass): the network keeps the parameters of the last *finished* epoch — or, with
``EarlyStopping(restore_best=True)``, the best epoch early stopping had seen (its ``on_train_end`` still runs;
the other callbacks' ``on_train_end`` do not, after a failure during training) — the history keeps the finished
epochs, ``net.training_config["error"]`` names the exception, and the exception propagates with the history
attached as ``exc.history``.
"""
from __future__ import annotations

import gc
import math
import sys
import time
from dataclasses import dataclass, field, fields

import numpy as np

from . import _core, _threads
from . import _validation as V
from .callbacks import EarlyStopping
from .network import Network, _fresh_seed

__all__ = ["History", "fit", "OPTIMIZERS"]

OPTIMIZERS = ("gd", "momentum", "adam")


@dataclass
class History:
    """Per reported epoch: ``epoch, train_cost, train_error, dev_cost, dev_error, grad_norms, time`` (lists
    of equal length); ``best_epoch`` (set by early stopping), ``stopped_early``, ``interrupted``,
    ``gradchecks`` (rows recorded by :class:`dnnkit.callbacks.GradientCheck`), ``config`` (the fit
    arguments) and ``train_data`` (the training ``(X, Y)``; not in ``to_dict``). ``history["dev_cost"]`` is ``history.dev_cost``."""

    epoch: list = field(default_factory=list)
    train_cost: list = field(default_factory=list)
    train_error: list = field(default_factory=list)
    dev_cost: list = field(default_factory=list)
    dev_error: list = field(default_factory=list)
    grad_norms: list = field(default_factory=list)
    time: list = field(default_factory=list)
    best_epoch: int | None = None
    stopped_early: bool = False
    interrupted: bool = False
    gradchecks: list = field(default_factory=list)
    config: dict = field(default_factory=dict)
    # the (X, Y) fit trained on, as validated arrays, for callbacks that need it (GradientCheck); not serialized
    train_data: tuple | None = field(default=None, repr=False, compare=False)

    _SERIES = ("epoch", "train_cost", "train_error", "dev_cost", "dev_error", "grad_norms", "time")

    def __getitem__(self, key: str):
        if not isinstance(key, str) or key not in {f.name for f in fields(self)}:
            raise KeyError(key)
        return getattr(self, key)

    def __len__(self) -> int:
        return len(self.epoch)

    def _append(self, epoch, train_cost, train_error, dev_cost, dev_error, grad_norms, t) -> None:
        # one row: every series grows together
        row = (int(epoch), float(train_cost), float(train_error), float(dev_cost), float(dev_error),
               [float(g) for g in grad_norms], float(t))
        for name, value in zip(self._SERIES, row):
            getattr(self, name).append(value)

    def _extend(self, rows: dict) -> None:
        # rows recorded by the native loop: {series: array}, every series of _SERIES present. The cyclic GC is
        # paused meanwhile: a long fit's rows are thousands of new lists (grad_norms), which would otherwise
        # trigger collections (full ones, over every object of the process, among them) halfway through
        # the conversion (~0.2-0.7 us a row, measured on the course's net).
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            for name in self._SERIES:
                getattr(self, name).extend(rows[name].tolist())
        finally:
            if was_enabled:
                gc.enable()

    def _truncate(self) -> None:
        # after an interruption in the middle of _append: keep the complete rows only
        n = min(len(getattr(self, name)) for name in self._SERIES)
        for name in self._SERIES:
            del getattr(self, name)[n:]

    def to_dict(self) -> dict:
        """Plain lists and numbers (gradcheck reports reduced to their numbers)."""
        d: dict = {name: list(getattr(self, name)) for name in self._SERIES}
        d["grad_norms"] = [list(g) for g in self.grad_norms]
        d.update(best_epoch=self.best_epoch, stopped_early=self.stopped_early, interrupted=self.interrupted,
                 gradchecks=[{k: v for k, v in g.items() if k != "report"} for g in self.gradchecks],
                 config=dict(self.config))
        return d

    def _repr_html_(self) -> str:  # Jupyter: a table and a small cost curve (with matplotlib)
        from . import _html

        return _html.history(self)

    def __repr__(self) -> str:
        last = f", last train_cost={self.train_cost[-1]:.6g}" if self.epoch else ""
        flags = "".join(f", {k}=True" for k in ("stopped_early", "interrupted") if getattr(self, k))
        return f"History({len(self)} epochs reported{last}, best_epoch={self.best_epoch}{flags})"


# ------------------------------------------------------------------------------------------------- checks

class _Progress:
    """tqdm bar when available (or required), plain lines otherwise; silent unless verbose."""

    REFRESH = 0.1  # seconds: the native loop returns to refresh the bar at most ~10 times a second

    def __init__(self, verbose: bool, progress, total: int):
        self.bar = None
        self.verbose = verbose
        if not verbose or progress is False:
            return
        try:
            from tqdm.auto import tqdm
        except ImportError:
            if progress is True:
                raise ImportError("progress=True needs tqdm: pip install 'dnnkit[progress]'") from None
            return
        self.bar = tqdm(total=total, unit="epoch", file=sys.stderr, dynamic_ncols=True)

    @staticmethod
    def _items(h: History, i: int) -> dict:
        items = {"cost": h.train_cost[i]}
        for k in ("train_error", "dev_cost", "dev_error"):
            v = getattr(h, k)[i]
            if not math.isnan(v):
                items["error" if k == "train_error" else k] = v
        return items

    def update(self, done: int, h: History, first_new_row: int) -> None:
        """`done` more epochs finished; rows [first_new_row:] of `h` are new."""
        if not self.verbose:
            return
        if self.bar is not None:
            self.bar.update(done)
            if len(h) > 0:
                self.bar.set_postfix({k: f"{v:.4g}" for k, v in self._items(h, -1).items()}, refresh=False)
        else:
            for i in range(first_new_row, len(h)):
                print(f"epoch {h.epoch[i]}: " + "  ".join(f"{k} {v:.6g}" for k, v in self._items(h, i).items()),
                      file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _native_early_stopping(es) -> bool:
    """True when `es` behaves exactly as dnnkit.EarlyStopping (no overridden hook): its rule can then run in
    the native loop, with the same comparisons and a bit-exact copy of the best parameters."""
    hooks = ("on_train_begin", "on_epoch_end", "on_train_end", "_reset")
    return all(getattr(type(es), h) is getattr(EarlyStopping, h) and h not in vars(es) for h in hooks)


def _sync(history: History, trainer) -> int:
    """Appends the native trainer's rows that `history` does not have yet; returns the first new row."""
    first = len(history)
    history._extend(trainer.history(first))
    return first


# ------------------------------------------------------------------------------------------------- fit

def fit(net, X, Y, epochs: int = 100, learning_rate: float = 0.01, batch_size: int | None = None,
        optimizer: str = "gd", beta: float = 0.9, beta1: float = 0.9, beta2: float = 0.999,
        epsilon: float = 1e-8, l2: float = 0.0, l1: float = 0.0, keep_prob=1.0, validation=None,
        early_stopping=None, callbacks=(), seed: int | None = None, verbose: bool = False, progress=None,
        log_every: int = 1, train_eval: str = "running", on_interrupt: str = "stop", n_threads: int | None = None,
        _stop_at_step: int | None = None) -> History:
    """Train ``net`` in place; returns a :class:`History`.

    epochs: passes over the data. learning_rate: the step size. batch_size: None (full batch: one step per
    epoch, the course's iterations) or the mini-batch size (the last batch of an epoch holds the rest).
    optimizer: "gd" (theta -= lr g), "momentum" (v = beta v + (1-beta) g; theta -= lr v) or "adam"
    (v, s with beta1, beta2, bias-corrected, epsilon). l2, l1: the seeds' regularization,
    J + (l2/(2m)) sum ||W||^2 + (l1/(2m)) sum |W| with m the batch size. keep_prob: inverted dropout (a float
    for every hidden layer, or per layer; see ``Network.forward``), fresh masks every step.
    validation: ``(X_dev, Y_dev)`` evaluated every reported epoch. early_stopping: a
    :class:`dnnkit.callbacks.EarlyStopping`. callbacks: objects following the protocol of
    :mod:`dnnkit.callbacks`. seed: makes shuffles and masks reproducible (drawn fresh when None, and
    recorded in ``history.config``). verbose: a tqdm progress bar (``progress=False``: plain lines;
    ``progress=True``: tqdm required). log_every: report (history row, validation, callbacks, progress)
    every this many epochs, and at the last one. train_eval: "running" or "full" (see the module doc).
    on_interrupt: "stop" or "raise" (see the module doc). n_threads: native threads for this call (restored
    afterwards); None: the process setting, or inside a Dask worker the threads Dask gave it (``dnnkit._threads``).

    Every argument is checked before training starts: a call that raises leaves ``net`` unchanged.
    """
    # ---------------------------------------------------------------- validate everything first
    if not isinstance(net, Network):
        raise TypeError(f"net must be a dnnkit.Network, got {type(net).__name__}")
    X, Y = net.check_data(X, Y)
    m = X.shape[1]
    epochs = V.check_positive_int(epochs, "epochs", minimum=0)
    lr = V.check_real(learning_rate, "learning_rate", lo=0.0, lo_open=True)
    if batch_size is not None:
        batch_size = V.check_positive_int(batch_size, "batch_size")
    V.check_choice(optimizer, OPTIMIZERS, "optimizer")
    beta = V.check_real(beta, "beta", 0.0, 1.0, hi_open=True)
    beta1 = V.check_real(beta1, "beta1", 0.0, 1.0, hi_open=True)
    beta2 = V.check_real(beta2, "beta2", 0.0, 1.0, hi_open=True)
    epsilon = V.check_real(epsilon, "epsilon", 0.0, lo_open=True)
    l2, l1 = V.check_nonneg(l2, "l2"), V.check_nonneg(l1, "l1")
    keep = V.normalize_keep_prob(keep_prob, net.L)
    seed = _fresh_seed() if seed is None else V.check_seed(seed)
    verbose = V.check_bool(verbose, "verbose")
    if progress is not None:
        progress = V.check_bool(progress, "progress")
    log_every = V.check_positive_int(log_every, "log_every")
    V.check_choice(train_eval, ("running", "full"), "train_eval")
    V.check_choice(on_interrupt, ("stop", "raise"), "on_interrupt")
    if n_threads is not None:
        V.check_n_threads(n_threads)
    Xd: np.ndarray | None
    Yd: np.ndarray | None
    if validation is not None:
        if not isinstance(validation, (tuple, list)) or len(validation) != 2:
            raise TypeError("validation must be a tuple (X_dev, Y_dev) or None")
        Xd, Yd = net.check_data(validation[0], validation[1], "validation[0]", "validation[1]")
    else:
        Xd = Yd = None
    if early_stopping is not None and not isinstance(early_stopping, EarlyStopping):
        raise TypeError("early_stopping must be a dnnkit.EarlyStopping or None, got "
                        f"{type(early_stopping).__name__}")
    if isinstance(callbacks, (str, bytes)) or not hasattr(callbacks, "__iter__"):
        raise TypeError("callbacks must be a sequence of callback objects")
    cbs: list = []
    for cb in callbacks:  # the same object given twice (or also as early_stopping) runs once
        if not any(cb is c for c in cbs) and cb is not early_stopping:
            cbs.append(cb)
    for cb in cbs:
        if not any(callable(getattr(cb, h, None)) for h in ("on_train_begin", "on_epoch_end", "on_train_end")):
            raise TypeError(f"{cb!r} is not a callback: it has none of on_train_begin / on_epoch_end / "
                            "on_train_end")
    if early_stopping is not None:
        early_stopping._check(net, has_validation=Xd is not None)
        cbs.append(early_stopping)
    for cb in cbs:
        if callable(getattr(cb, "_check", None)) and cb is not early_stopping:
            cb._check(net, has_validation=Xd is not None)

    trainer_cls = _core.Trainer64 if net.dtype == np.float64 else _core.Trainer32
    trainer = trainer_cls(list(net.layer_dims), net.hidden, net.output, net.loss, net.alpha, X, Y, optimizer,
                          lr, beta, beta1, beta2, epsilon, l2, l1, keep, seed, min(batch_size or m, m))

    config = dict(epochs=epochs, learning_rate=lr, batch_size=batch_size, optimizer=optimizer, beta=beta,
                  beta1=beta1, beta2=beta2, epsilon=epsilon, l2=l2, l1=l1, keep_prob=keep, seed=seed,
                  log_every=log_every, train_eval=train_eval, m=m,
                  validation_m=None if Xd is None else int(Xd.shape[1]),
                  early_stopping=None if early_stopping is None else early_stopping.get_config(),
                  dtype=net.dtype.name)
    history = History(config=config, train_data=(X, Y))

    if Xd is not None and Yd is not None:
        trainer.set_validation(Xd, Yd)
    if train_eval == "full":
        trainer.set_train_eval_full(True)
    # Early stopping runs in the native loop when it is a plain EarlyStopping and nothing else needs Python
    # after each reported epoch (callbacks run in order, early stopping last: with user callbacks all of
    # them run in Python, as before).
    native_es = early_stopping is not None and len(cbs) == 1 and _native_early_stopping(early_stopping)
    if native_es:
        assert early_stopping is not None  # (for mypy: native_es implies it)
        trainer.set_early_stopping(early_stopping.monitor, early_stopping.patience, early_stopping.min_delta,
                                   early_stopping.restore_best)
    py_cbs = [] if native_es else cbs

    # ---------------------------------------------------------------- train
    bar = _Progress(verbose, progress, epochs)
    threads = _threads.using(n_threads)  # the thread count of this call, restored in `finally`
    config["n_threads"] = threads.__enter__()
    budget = _Progress.REFRESH if verbose else math.inf
    stop_at = -1 if _stop_at_step is None else int(_stop_at_step)
    t0 = time.perf_counter()
    done = 0
    stop = False
    interrupt_exc = error_exc = None
    try:
        for cb in cbs:
            if callable(getattr(cb, "on_train_begin", None)):
                cb.on_train_begin(net, history)
        while done < epochs and not stop:
            # with Python callbacks: up to the next reported epoch; else every remaining epoch in one call
            n = min(log_every - done % log_every, epochs - done) if py_cbs else epochs - done
            r = trainer.run(net.theta, n, stop_at, 0.05, log_every, epochs, budget, time.perf_counter() - t0)
            done += int(r["epochs"])
            first = _sync(history, trainer)
            if r["interrupted"]:
                # the native loop rolled the unfinished epoch back (and gave the last finished one a row)
                history.interrupted = True
                break
            bar.update(int(r["epochs"]), history, first)
            stop = bool(r["stopped_early"])
            if py_cbs and len(history) > first and history.epoch[-1] == done:  # a reported epoch
                for cb in py_cbs:
                    if callable(getattr(cb, "on_epoch_end", None)) and cb.on_epoch_end(done, net, history):
                        stop = True
        history.stopped_early = stop
    except KeyboardInterrupt as e:
        # Raised from Python code between native calls (a callback, the progress bar, or a signal that
        # arrived just as a native call ended). The network holds the parameters of the epochs the native
        # trainer finished (it rolls back an unfinished one); make the history agree with it.
        history.interrupted = True
        interrupt_exc = e
        done = int(trainer.epoch)
        history._truncate()
        trainer.finish_row(net.theta, time.perf_counter() - t0)
        _sync(history, trainer)
    except Exception as e:
        # A callback (or the validation pass / progress bar) raised between native calls: the network holds
        # the last finished epoch (the native trainer never leaves a half step); the history is made to agree,
        # early stopping's restore_best still runs, and the exception propagates with ``.history`` attached.
        error_exc = e
        done = int(trainer.epoch)
        history._truncate()
    finally:
        threads.__exit__(None, None, None)
        bar.close()
    if native_es:  # the native rule's state, as the Python class would hold it (on_train_end restores)
        assert early_stopping is not None
        st = trainer.early_stopping_state()
        early_stopping.best, early_stopping.best_epoch, early_stopping.wait = st["best"], st["best_epoch"], st["wait"]
        early_stopping.best_theta = st["best_theta"] if early_stopping.restore_best else None
        history.best_epoch = early_stopping.best_epoch
    failed = error_exc is not None  # then only early stopping's on_train_end (restore_best) runs
    for cb in cbs:  # every on_train_end runs (restore_best included) even if an earlier one raises
        if callable(getattr(cb, "on_train_end", None)) and (not failed or isinstance(cb, EarlyStopping)):
            try:
                cb.on_train_end(net, history)
            except Exception as e:
                error_exc = e if error_exc is None else error_exc
    config.update(epochs_run=done, steps=int(trainer.step), stopped_early=history.stopped_early,
                  interrupted=history.interrupted, best_epoch=history.best_epoch)
    if error_exc is not None:
        config["error"] = f"{type(error_exc).__name__}: {error_exc}"[:500]
    net.training_config = dict(config)
    if error_exc is not None:
        try:
            error_exc.history = history  # type: ignore[attr-defined]  # the partial history rides on it
        except AttributeError:  # an exception type without a __dict__
            pass
        raise error_exc
    if history.interrupted and on_interrupt == "raise":
        exc = interrupt_exc if interrupt_exc is not None else KeyboardInterrupt()
        exc.history = history  # type: ignore[attr-defined]  # the partial history rides on the exception
        raise exc
    return history

