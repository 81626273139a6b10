"""Hyperparameter sweeps: ``dk.sweep(grid, X, Y, validation=(X_dev, Y_dev), executor=None, ...)``.

The seeds call deep learning "a highly iterative process": try an init, an L2 strength, a keep_prob, compare dev
errors, repeat. ``sweep`` trains one network per configuration of a grid and returns a :class:`SweepResult`: a
table (train/dev error and cost, the bias/variance verdict of :func:`dnnkit.diagnose.bias_variance`, best epoch,
time), the best configuration, a plot of dev error against each hyperparameter, and the trained models on request.

Grid keys (each a list of values; the Cartesian product is taken in the order given, the last key varying
fastest; a list of such dicts is the union of their products)::

    init           "he", "glorot", "random", ... (dk.initialize_parameters)
    l2, l1         the seeds' lambdas
    keep_prob      inverted dropout (a float, or one value per hidden layer)
    layers         hidden layer sizes, e.g. [(20, 3), (50, 20, 3)] (the input and output sizes come from X, Y)
    learning_rate, optimizer ("gd", "momentum", "adam"), batch_size, epochs, hidden (activation)

Every other setting is a keyword of ``sweep`` and the same for every configuration. Reproducible: each network
is initialized with ``rng=seed`` and trained with ``seed=seed`` (the same for every configuration, so two
configurations differ only in their hyperparameters); training is bit-reproducible and independent of the
thread count, so the same call gives the same table locally, on a process pool or on a Dask cluster (only the
``seconds``, ``n_threads`` and ``worker`` columns differ).

Each configuration is one task: :func:`train_config`, a module-level function that gets plain data (the
configuration, X, Y, the dev set, the fixed settings) and returns plain data (numbers, and theta when the models
are kept). With a Dask executor the data is scattered to the workers once. A worker that dies is Dask's to
retry (a task is deterministic: the retried result is the same). Ctrl-C cancels the configurations not yet
started and returns the finished ones (``res.complete == False``).
"""
from __future__ import annotations

import copy
import itertools
import math
import numbers
import time

import numpy as np

__all__ = ["sweep", "SweepResult", "train_config", "GRID_KEYS"]

GRID_KEYS = ("init", "l2", "l1", "keep_prob", "layers", "learning_rate", "optimizer", "batch_size", "epochs",
             "hidden")
_VOLATILE = ("seconds", "n_threads", "worker")  # the only columns that depend on where a configuration ran


def _grid_configs(grid) -> list:
    if isinstance(grid, dict):
        grids = [grid]
    elif isinstance(grid, (list, tuple)) and grid and all(isinstance(g, dict) for g in grid):
        grids = list(grid)
    else:
        raise TypeError("grid must be a dict {name: [values, ...]} or a non-empty list of such dicts, got "
                        f"{type(grid).__name__}")
    configs = []
    for g in grids:
        unknown = sorted(set(g) - set(GRID_KEYS))
        if unknown:
            raise ValueError(f"unknown grid keys {unknown}; known: {', '.join(GRID_KEYS)}")
        keys, values = [], []
        for key, vals in g.items():
            if isinstance(vals, (str, bytes)) or not hasattr(vals, "__iter__"):
                raise TypeError(f"grid[{key!r}] must be a list of values, got {vals!r}")
            vals = list(vals)
            if not vals:
                raise ValueError(f"grid[{key!r}] is empty")
            keys.append(key)
            values.append([_plain(v) for v in vals])
        for combo in itertools.product(*values):
            configs.append(dict(zip(keys, combo)))
    return configs


def _plain(v):
    """NumPy scalars -> Python numbers, tuples of sizes -> tuples of ints (the table and to_dict stay plain)."""
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, (list, tuple)):
        return tuple(_plain(x) for x in v)
    return v


def _short(v) -> str:
    if isinstance(v, tuple):
        return "(" + ",".join(_short(x) for x in v) + ")"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


# ------------------------------------------------------------------------------------------------- the task

def train_config(common: dict, config: dict, n_threads=None, keep_model: bool = False) -> dict:
    """Train one configuration (runs on a worker): plain data in, a plain dict out (see the module doc)."""
    from . import _threads
    from .diagnose import bias_variance
    from .network import Network

    t0 = time.perf_counter()
    s = dict(common["settings"], **config)
    X, Y, Xd, Yd = common["data"]
    dims = [int(X.shape[0]), *[int(n) for n in s["layers"]], int(Y.shape[0])]
    net = Network(dims, hidden=s["hidden"], output=s["output"], loss=s["loss"], dtype=s["dtype"])
    net.initialize(s["init"], rng=s["seed"])
    es = copy.deepcopy(common["early_stopping"])
    with _threads.using(n_threads):
        used = _threads.native_threads()  # what the native core reads during this training
        history = net.fit(X, Y, epochs=s["epochs"], learning_rate=s["learning_rate"], batch_size=s["batch_size"],
                          optimizer=s["optimizer"], l2=s["l2"], l1=s["l1"], keep_prob=s["keep_prob"],
                          validation=(Xd, Yd), early_stopping=es, seed=s["seed"], log_every=s["log_every"])
        train, dev = net.evaluate(X, Y), net.evaluate(Xd, Yd)
    verdict = None
    if not (math.isnan(train["error"]) or math.isnan(dev["error"])):
        verdict = bias_variance(train["error"], dev["error"], bayes_error=s["bayes_error"]).verdict
    best = history.best_epoch
    if best is None and history.dev_cost:
        dc = np.asarray(history.dev_cost, dtype=np.float64)
        best = int(history.epoch[int(np.nanargmin(dc))]) if np.isfinite(dc).any() else None
    row = {"config": dict(config), "train_error": float(train["error"]), "dev_error": float(dev["error"]),
           "train_cost": float(train["cost"]), "dev_cost": float(dev["cost"]), "verdict": verdict,
           "best_epoch": best, "epochs_run": int(history.config.get("epochs_run", len(history))),
           "stopped_early": bool(history.stopped_early), "interrupted": bool(history.interrupted),
           "seconds": time.perf_counter() - t0,
           "n_threads": int(used), "worker": _where()}
    if keep_model:
        row["model"] = {"layer_dims": dims, "hidden": net.hidden, "output": net.output, "loss": net.loss,
                        "dtype": net.dtype.name, "alpha": float(net.alpha), "theta": np.array(net.theta),
                        "training_config": dict(net.training_config or {}), "history": history.to_dict()}
    return row


def _where() -> str:
    from .distributed import _where as where

    return where()


# ------------------------------------------------------------------------------------------------- the call

def sweep(grid, X, Y, validation=None, *, layers=(20, 3), hidden="relu", output=None, loss=None, init=None,
          epochs=1000, learning_rate=0.01, optimizer="gd", batch_size=None, l2=0.0, l1=0.0, keep_prob=1.0,
          early_stopping=None, seed=0, log_every=None, bayes_error=0.0, dtype="float64", executor=None,
          n_threads=None, keep_models=False, progress=None, timeout=None) -> "SweepResult":
    """Train one network per configuration of ``grid`` (see the module doc) and return a :class:`SweepResult`.

    X, Y: training data (examples are columns); validation: ``(X_dev, Y_dev)`` (required: the dev error is what
    a sweep compares). output / loss: from Y when None (one row of 0/1: sigmoid + bce; one-hot columns: softmax
    + ce). early_stopping: a :class:`dnnkit.EarlyStopping` (copied per configuration). log_every: history rows
    (default: about 100 per run). executor: None (here, one after the other), a ``concurrent.futures.Executor``
    (a Dask ``Client.get_executor()`` or ``Client``, a process pool) or a map-like callable. n_threads: native
    threads per configuration (None: the process setting; inside a Dask worker the threads Dask gave it).
    keep_models: keep the trained networks (``res.models``). progress: a bar counting finished configurations
    (None: when tqdm is installed and there is an executor). timeout: seconds, then TimeoutError.
    """
    from . import _validation as V
    from .callbacks import EarlyStopping
    from .distributed import _Runner
    from .network import Network

    configs = _grid_configs(grid)
    if validation is None:
        raise TypeError("sweep needs validation=(X_dev, Y_dev): a sweep compares dev errors (dk.data.split makes one)")
    if not isinstance(validation, (tuple, list)) or len(validation) != 2:
        raise TypeError("validation must be a tuple (X_dev, Y_dev)")
    X = V.as_array(X, "X", np.float64)
    Y = V.as_array(Y, "Y", np.float64, cols=X.shape[1])
    Xd = V.as_array(validation[0], "validation[0]", np.float64, rows=X.shape[0])
    Yd = V.as_array(validation[1], "validation[1]", np.float64, rows=Y.shape[0], cols=Xd.shape[1])
    if output is None:
        output = "softmax" if Y.shape[0] > 1 else "sigmoid"
    if early_stopping is not None and not isinstance(early_stopping, EarlyStopping):
        raise TypeError(f"early_stopping must be a dnnkit.EarlyStopping or None, got {type(early_stopping).__name__}")
    if n_threads is not None:
        V.check_n_threads(n_threads)
    if log_every is None:
        log_every = max(1, int(max(_values(configs, "epochs", epochs))) // 100)
    keep_models = bool(keep_models)
    settings = dict(layers=_plain(tuple(layers)), hidden=hidden, output=output, loss=loss, init=init, epochs=epochs,
                    learning_rate=learning_rate, optimizer=optimizer, batch_size=batch_size, l2=l2, l1=l1,
                    keep_prob=_plain(keep_prob), seed=seed, log_every=log_every, bayes_error=bayes_error,
                    dtype=dtype)
    # every configuration is checked here, before anything runs: a bad value fails fast, naming its configuration
    for i, cfg in enumerate(configs):
        s = dict(settings, **cfg)
        try:
            if isinstance(s["layers"], (int, numbers.Integral)):
                raise TypeError("layers must be a sequence of hidden layer sizes, e.g. (20, 3)")
            dims = [X.shape[0], *s["layers"], Y.shape[0]]
            net = Network(dims, hidden=s["hidden"], output=s["output"], loss=s["loss"], dtype=s["dtype"])
            net.initialize(s["init"], rng=s["seed"])
            net.fit(X[:, :1], Y[:, :1], epochs=0, learning_rate=s["learning_rate"], batch_size=s["batch_size"],
                    optimizer=s["optimizer"], l2=s["l2"], l1=s["l1"], keep_prob=s["keep_prob"], seed=s["seed"],
                    log_every=s["log_every"])
            V.check_positive_int(s["epochs"], "epochs")
            V.check_nonneg(s["bayes_error"], "bayes_error")
        except (TypeError, ValueError, KeyError) as e:
            raise type(e)(f"configuration {i} {cfg}: {e}") from None
    common = {"settings": settings, "data": (X, Y, Xd, Yd), "early_stopping": early_stopping}
    t0 = time.perf_counter()
    if executor is None:
        rows, complete = _run_here(common, configs, n_threads, keep_models, progress, timeout)
    else:
        runner = _Runner(executor)
        shared = runner.share(common)
        items = [(shared, cfg, n_threads, keep_models) for cfg in configs]
        results, complete = runner.run(train_config, items, progress, timeout, "sweep",
                                       interrupted=lambda r: r["interrupted"])
        rows = [r for r in results if r is not None and not r["interrupted"]]  # finished configurations only
    return SweepResult(rows, configs, settings, complete, time.perf_counter() - t0)


def _values(configs, key, default):
    vals = [c[key] for c in configs if key in c]
    return vals or [default]


def _run_here(common, configs, n_threads, keep_models, progress, timeout):
    from .distributed import _bar

    rows = []
    bar = _bar(bool(progress) if progress is not None else False, len(configs), "sweep")
    deadline = None if timeout is None else time.monotonic() + float(timeout)
    try:
        for cfg in configs:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"sweep: {len(rows)} of {len(configs)} configurations done after {timeout:g} s")
            row = train_config(common, cfg, n_threads, keep_models)
            if row["interrupted"]:  # Ctrl-C inside fit: that configuration did not finish
                return rows, False
            rows.append(row)
            if bar is not None:
                bar.update(1)
        return rows, True
    except KeyboardInterrupt:
        return rows, False
    finally:
        if bar is not None:
            bar.close()


# ------------------------------------------------------------------------------------------------- the result

class SweepResult:
    """The table of a sweep: ``len(res)``, ``res[i]`` (a row dict), ``res.best`` (the row with the lowest dev
    error; ties: lower dev cost, then the earlier row), ``res.models`` (with ``keep_models=True``),
    ``print(res)``, ``res.to_dict()``, ``res.plot()``. ``res.complete`` is False after Ctrl-C."""

    def __init__(self, rows, configs, settings, complete=True, seconds=float("nan")):
        self.rows = list(rows)
        self.configs = list(configs)
        self.settings = dict(settings)
        self.complete = bool(complete)
        self.seconds = float(seconds)
        self.varied = [k for k in GRID_KEYS if any(k in c for c in configs)]
        self.varied.sort(key=lambda k: min(list(c).index(k) for c in configs if k in c))

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i):
        return self.rows[i]

    def __iter__(self):
        return iter(self.rows)

    @property
    def best_index(self) -> int | None:
        if not self.rows:
            return None

        def key(i):
            r = self.rows[i]
            de, dc = r["dev_error"], r["dev_cost"]
            return (math.inf if de != de else de, math.inf if dc != dc else dc, i)

        return min(range(len(self.rows)), key=key)

    @property
    def best(self) -> dict | None:
        i = self.best_index
        return None if i is None else self.rows[i]

    @property
    def models(self) -> list:
        """The trained networks, in row order (``keep_models=True``)."""
        if not self.rows or "model" not in self.rows[0]:
            raise ValueError("the models were not kept: run dk.sweep(..., keep_models=True)")
        return [_rebuild(r["model"]) for r in self.rows]

    def setting(self, row, key):
        return row["config"].get(key, self.settings[key])

    # ---- output
    def table(self) -> list:
        """Rows as lists of strings (the printed table), header first."""
        head = [*self.varied, "train_err", "dev_err", "dev_cost", "verdict", "best_epoch", "seconds"]
        out = [head]
        bi = self.best_index
        for i, r in enumerate(self.rows):
            out.append([_short(self.setting(r, k)) for k in self.varied] +
                       [f"{r['train_error']:.4f}", f"{r['dev_error']:.4f}", f"{r['dev_cost']:.4g}",
                        str(r["verdict"] or "-"), str(r["best_epoch"] or "-"),
                        f"{r['seconds']:.2f}" + (" *" if i == bi else "")])
        return out

    def __str__(self) -> str:
        t = self.table()
        w = [max(len(row[c]) for row in t) for c in range(len(t[0]))]
        lines = ["  ".join(v.ljust(w[c]) for c, v in enumerate(row)).rstrip() for row in t]
        lines.insert(1, "  ".join("-" * x for x in w))
        head = f"Sweep: {len(self)} of {len(self.configs)} configurations" + \
            ("" if self.complete else " (INCOMPLETE: interrupted)") + f", {self.seconds:.2f} s"
        best = self.best
        tail = [] if best is None else [f"best (*): {best['config']}  dev error {best['dev_error']:.4f}"
                                        f", train error {best['train_error']:.4f} ({best['verdict'] or '-'})"]
        return "\n".join([head, *lines, *tail])

    def __repr__(self) -> str:
        b = self.best
        return (f"SweepResult({len(self)} configurations, best={None if b is None else b['config']}"
                f"{'' if self.complete else ', complete=False'})")

    def to_dict(self, *, volatile: bool = True) -> dict:
        """Plain data (no models); ``volatile=False`` drops the columns that depend on where a row ran (seconds,
        n_threads, worker), so two runs of the same sweep compare equal."""
        rows = []
        for r in self.rows:
            d = {k: v for k, v in r.items() if k != "model" and (volatile or k not in _VOLATILE)}
            d["config"] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in r["config"].items()}
            rows.append(d)
        return {"rows": rows, "best_index": self.best_index, "varied": list(self.varied),
                "complete": self.complete, "n_configs": len(self.configs),
                "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.settings.items()}}

    def plot(self, axes=None, path=None):
        """Dev (solid) and train (dotted) error against each varied hyperparameter: one panel per key, one point
        per configuration, the line through the best dev error per value. Returns the figure."""
        import matplotlib

        if path is not None and axes is None:
            matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        keys = self.varied or ["config"]
        if axes is None:
            fig, axes = plt.subplots(1, len(keys), figsize=(3.6 * len(keys), 3.2), squeeze=False)
            axes = list(axes[0])
        else:
            axes = list(np.atleast_1d(axes))
            fig = axes[0].figure
        for ax, key in zip(axes, keys):
            vals = [self.setting(r, key) if key != "config" else i for i, r in enumerate(self.rows)]
            numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals)
            levels = sorted(set(vals), key=lambda v: (v if numeric else _short(v)))
            pos = {v: (v if numeric else j) for j, v in enumerate(levels)}
            x = [pos[v] for v in vals]
            ax.scatter(x, [r["dev_error"] for r in self.rows], color="tab:red", s=14, label="dev error")
            ax.scatter(x, [r["train_error"] for r in self.rows], color="tab:blue", s=10, marker="x",
                       label="train error")
            best = [min(r["dev_error"] for r, v in zip(self.rows, vals) if v == lv) for lv in levels]
            ax.plot([pos[v] for v in levels], best, color="tab:red", lw=1)
            if not numeric:
                ax.set_xticks(range(len(levels)))
                ax.set_xticklabels([_short(v) for v in levels], rotation=30, fontsize=8)
            elif len(levels) > 2 and min(levels) > 0 and max(levels) / min(levels) > 50:
                ax.set_xscale("log")
            ax.set_xlabel(key)
            ax.set_ylabel("error")
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=8)
        fig.suptitle("sweep: dev error by hyperparameter")
        fig.tight_layout()
        if path is not None:
            fig.savefig(path, dpi=110)
            plt.close(fig)
        return fig


def _rebuild(spec):
    from .network import Network

    net = Network(spec["layer_dims"], hidden=spec["hidden"], output=spec["output"], loss=spec["loss"],
                  dtype=spec["dtype"], alpha=spec["alpha"])
    net.theta = spec["theta"]
    net.training_config = dict(spec["training_config"])
    return net
