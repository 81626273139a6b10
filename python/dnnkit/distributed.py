"""Scale out: gradient checks sharded over an executor, and the executor plumbing of :func:`dnnkit.sweep`.

``dk.gradcheck(net, X, Y, ..., executor=ex)`` with ``ex`` one of

- a ``concurrent.futures.Executor``: ``ProcessPoolExecutor``, ``ThreadPoolExecutor``, a Dask
  ``Client.get_executor()`` (or the ``distributed.Client`` itself), ...;
- a map-like callable ``f(fn, items) -> iterable of results``: ``multiprocessing.Pool().map`` (or ``.imap``,
  which lets the progress bar move), a Ray pool's ``map``, the built-in ``map``.

How it works (what is sent, and why the result is the serial one bit for bit):

1. The call is validated where it was made, by running the serial check on zero coordinates (same errors,
   same messages as without an executor), and the coordinates are selected exactly as the serial call selects
   them (all of them, ``indices``, or ``k`` per component in sample mode, drawn with ``rng``).
2. The coordinates are cut into shards of about equal *cost*. Cost model (per coordinate of layer l, m
   examples, layer sizes n_0..n_L; :func:`coordinate_costs`)::

       general path:  cost(l) = m * (c (1 + n_{l+1}) + sum_{k > l} n_k n_{k-1} + c n_L)   (c = 20 tanh/sigmoid, else 1)
       fast path:     cost    = m * (1 + n_L)       (relu / leaky_relu / linear hidden layers)

   the work of propagating one perturbation through the suffix of the net above layer l, so on the general path
   early layers get fewer coordinates per shard; the fast path costs about the same everywhere. Cuts fall
   between units (rows of W[l]) so that the fast path's per-unit Jacobian is formed once. The default number
   of shards is 4 per worker thread (load balance; more shards cost more data sent, see below).
3. Each shard is plain data — the architecture (layer sizes, activations, loss, alpha), theta as float64,
   X, Y, the gradient to check (or None: the worker runs the same float64 backward the serial check runs),
   dropout keep_prob / seed / step / masks, l2 / l1 / eps / engine options — and the shard's coordinates (a
   ``(start, stop)`` range when contiguous). Never a pybind object. A module-level function,
   :func:`check_shard`, rebuilds a float64 Network on the worker and runs the public ``dk.gradcheck`` with
   ``indices=`` the shard. Bytes per shard: 8 * (n_params [theta] + n_params [grads, when given] +
   n_x m + n_y m [X, Y] + dropout masks) + the indices; with Dask the common part is scattered to the workers
   once and each task carries only its indices.
4. The engine computes every coordinate independently of the other coordinates in the same call (its batches
   depend on sizes only, and a batched GEMM column does not depend on its neighbours), so the shard reports
   merged by ``GradcheckReport.merge`` and put back in the serial order equal the serial report: the same
   numbers bit for bit, the same findings and verdict (tests/test_distributed.py checks this with
   ``np.array_equal`` on every array, serial vs ProcessPoolExecutor, a map callable and a Dask LocalCluster).

Ctrl-C while waiting cancels the shards not yet started and returns the report of the finished ones with
``report.complete == False`` (``report.missing_indices``: the coordinates not checked; ``bool(report)`` is then
False). ``timeout=`` (seconds) does the same but raises ``TimeoutError``. A worker that dies is Dask's to
retry (its scheduler reruns the task elsewhere; the shard is deterministic, so the result is the same);
a broken ``ProcessPoolExecutor`` raises.
"""
from __future__ import annotations

import concurrent.futures as cf
import functools
import inspect
import os
import socket
import time

import numpy as np

__all__ = ["check_shard", "plan_shards", "coordinate_costs", "executor_workers", "distributable",
           "sharded_gradcheck"]

_EXTRA = ("executor", "n_threads", "n_shards", "progress", "timeout")
_POLL_S = 0.2  # how often the waiting loop wakes up (Ctrl-C, timeout)


# ----------------------------------------------------------------------------- the decorator on dk.gradcheck

def distributable(fn):
    """Adds ``executor=, n_threads=, n_shards=, progress=, timeout=`` to ``gradcheck`` (see its docstring): without
    an executor the call runs here with ``n_threads``; with one it is sharded (:func:`sharded_gradcheck`). Every
    other argument goes to ``fn`` unchanged — on the workers too — so the sharded check is the serial one."""
    sig = inspect.signature(fn)

    @functools.wraps(fn)
    def wrapper(*args, executor=None, n_threads=None, n_shards=None, progress=None, timeout=None, **kwargs):
        from . import _threads
        from . import _validation as V

        if n_threads is not None:
            V.check_n_threads(n_threads)
        if executor is None:
            if n_shards is not None or progress is not None or timeout is not None:
                raise ValueError("n_shards, progress and timeout apply to a sharded check: pass executor= too")
            with _threads.using(n_threads):
                return fn(*args, **kwargs)
        return sharded_gradcheck(fn, args, kwargs, executor=executor, n_threads=n_threads, n_shards=n_shards,
                                 progress=progress, timeout=timeout)

    extra = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None) for name in _EXTRA]
    wrapper.__signature__ = sig.replace(parameters=[*sig.parameters.values(), *extra])
    wrapper.__wrapped_check__ = fn
    return wrapper


# ----------------------------------------------------------------------------- executors

class _Runner:
    """One interface over an Executor (submit/futures) and a map-like callable."""

    def __init__(self, executor):
        self.client = None
        self.executor = None
        self.mapper = None
        if _is_dask_client(executor):
            executor = executor.get_executor()
        if isinstance(executor, cf.Executor) or (hasattr(executor, "submit") and not callable(executor)):
            self.executor = executor
            client = getattr(executor, "_client", None)
            if client is not None and hasattr(client, "scatter"):
                self.client = client  # a Dask ClientExecutor: big common data is scattered once
        elif callable(executor):
            self.mapper = executor
        else:
            raise TypeError("executor must be a concurrent.futures.Executor (ProcessPoolExecutor, a Dask "
                            "Client.get_executor()), a distributed.Client, or a map-like callable such as "
                            f"multiprocessing.Pool().map; got {type(executor).__name__}")

    def workers(self) -> int:
        return executor_workers(self.client if self.client is not None else (self.executor or self.mapper))

    def share(self, common):
        """The common payload as each task should receive it (a Dask future when scattered)."""
        if self.client is None:
            return common
        [fut] = self.client.scatter([common], broadcast=True, hash=False)
        return fut

    def run(self, fn, items, progress, timeout, what, interrupted=None):
        """Run ``fn(*item)`` for every item; returns (results in item order or None where missing, complete).
        Ctrl-C: cancels what has not started and returns complete=False; timeout: the same, then TimeoutError.
        ``interrupted(result)``: True for a part that a Ctrl-C stopped inside (the part's own SIGINT handling, e.g.
        in a worker process of the terminal's process group, or in this process with a plain ``map``): it is kept,
        and the run stops as for a Ctrl-C here."""
        n = len(items)
        results = [None] * n
        bar = _bar(progress, n, what)
        deadline = None if timeout is None else time.monotonic() + timeout
        complete = True
        try:
            if self.mapper is not None:
                it = iter(self.mapper(_star, [(fn, item) for item in items]))
                for i in range(n):
                    results[i] = next(it)
                    if bar is not None:
                        bar.update(1)
                    if interrupted is not None and interrupted(results[i]):
                        raise KeyboardInterrupt
                    if deadline is not None and time.monotonic() > deadline and i + 1 < n:
                        raise TimeoutError(f"{what}: {i + 1} of {n} parts done after {timeout:g} s")
                return results, True
            futs = {}
            try:
                for i, item in enumerate(items):
                    futs[self.executor.submit(fn, *item)] = i
                pending = set(futs)
                while pending:
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        raise TimeoutError(f"{what}: {n - len(pending)} of {n} parts done after {timeout:g} s")
                    done, pending = cf.wait(pending, timeout=_POLL_S if left is None else min(_POLL_S, left),
                                            return_when=cf.FIRST_COMPLETED)
                    for f in done:
                        results[futs[f]] = f.result()  # a part's exception is the call's
                        if bar is not None:
                            bar.update(1)
                        if interrupted is not None and interrupted(results[futs[f]]):
                            raise KeyboardInterrupt
            except BaseException:
                for f in futs:
                    f.cancel()
                for f, i in futs.items():  # parts that finished meanwhile still count
                    if results[i] is None and f.done() and not f.cancelled() and f.exception() is None:
                        results[i] = f.result()
                raise
            return results, True
        except KeyboardInterrupt:
            complete = False
            return results, complete
        finally:
            if bar is not None:
                bar.close()


def _star(pair):
    fn, item = pair
    return fn(*item)


def _is_dask_client(obj) -> bool:
    return type(obj).__name__ == "Client" and type(obj).__module__.startswith("distributed") and \
        hasattr(obj, "get_executor")


def executor_workers(executor) -> int:
    """How many tasks ``executor`` runs at once (Dask: the threads of all workers; pools: max_workers;
    otherwise the local core count)."""
    if executor is not None and hasattr(executor, "nthreads") and callable(executor.nthreads):
        try:
            return max(1, int(sum(executor.nthreads().values())))
        except Exception:  # a client that lost its scheduler: fall through
            pass
    client = getattr(executor, "_client", None)
    if client is not None and client is not executor:
        return executor_workers(client)
    n = getattr(executor, "_max_workers", None) or getattr(executor, "_processes", None)
    if n is None:
        owner = getattr(executor, "__self__", None)  # a bound method: Pool.map -> the pool
        n = getattr(owner, "_processes", None) or getattr(owner, "_max_workers", None)
    return max(1, int(n or os.cpu_count() or 1))


def _bar(progress, total, what):
    if progress is False or total <= 1 and progress is None:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        if progress is True:
            raise ImportError("progress=True needs tqdm: pip install 'dnnkit[progress]'") from None
        return None
    import sys

    return tqdm(total=total, unit="shard" if what == "gradcheck" else "config", desc=what, file=sys.stderr,
                dynamic_ncols=True)


# ----------------------------------------------------------------------------- the cost model and the shards

_SMOOTH_COST = 20.0  # tanh / sigmoid: flops-equivalents of one activation delta (exp / tanh), vs ~1 for relu


def coordinate_costs(dims, m: int, indices, hidden: str = "relu", fast_path: bool = True) -> np.ndarray:
    """Relative cost of checking each flat coordinate of theta (see the module doc).

    General path (any activation): a coordinate of layer l changes row i of Z[l], then every unit above it, so
    ``cost(l) = m * (c * (1 + n_{l+1}) + sum_{k > l} n_k n_{k-1} + c * n_L)`` — the suffix products plus the
    activation and loss deltas (c = 20 for tanh / sigmoid, 1 otherwise). Fast path (relu / leaky_relu / linear
    hidden layers, the default for them): every coordinate costs about the same, ``m * (1 + n_L)`` (one
    precomputed Jacobian row per example). Measured on [784, 1024, 1024, 10]: W1 and W2 coordinates take the same
    time on the fast path; on a tanh [100, 200, 200, 10] W1 : W2 : W3 = 170 : 2.5 : 1 per coordinate (model: 210 :
    11 : 1) — close enough to balance shards, which are 4 per worker thread for the rest."""
    from ._params import layer_slices

    dims = [int(d) for d in dims]
    L = len(dims) - 1
    fast = fast_path and hidden in ("relu", "leaky_relu", "linear")
    c = 1.0 if hidden in ("relu", "leaky_relu", "linear") else _SMOOTH_COST
    starts, per = [], []
    for name, (sl, _) in layer_slices(dims).items():
        l = int(name[1:])
        starts.append(sl.start)
        if fast:
            per.append(float(m) * (1.0 + dims[L]))
            continue
        nxt = dims[l + 1] if l < L else 0
        suffix = sum(dims[k] * dims[k - 1] for k in range(l + 1, L + 1))
        per.append(float(m) * (c * (1.0 + nxt) + suffix + c * dims[L]))
    comp = np.searchsorted(np.asarray(starts), np.asarray(indices, dtype=np.int64), side="right") - 1
    return np.asarray(per)[comp]


def _unit_keys(dims, indices) -> np.ndarray:
    """An id per coordinate that changes between units (rows of W[l]; each bias its own)."""
    from ._params import layer_slices

    idx = np.asarray(indices, dtype=np.int64)
    key = np.empty(idx.size, np.int64)
    for name, (sl, shape) in layer_slices([int(d) for d in dims]).items():
        sel = (idx >= sl.start) & (idx < sl.stop)
        width = shape[1] if name.startswith("W") else 1
        key[sel] = sl.start + (idx[sel] - sl.start) // width * width
    return key


def plan_shards(costs, keys, n_shards: int) -> list:
    """Cut positions 0 = c_0 < c_1 < ... < c_s = len(costs) into at most n_shards runs of about equal summed cost,
    cutting only where ``keys`` changes (between units). Returns [(start, stop), ...]."""
    costs = np.asarray(costs, dtype=np.float64)
    n = costs.size
    if n == 0:
        return []
    keys = np.asarray(keys)
    cum = np.cumsum(costs)
    total = cum[-1]
    allowed = np.flatnonzero(keys[1:] != keys[:-1]) + 1  # a cut before position p
    if allowed.size == 0 or n_shards <= 1:
        return [(0, n)]
    before = cum[allowed - 1]  # cost of everything before each allowed cut
    cuts = [0]
    for s in range(1, n_shards):
        j = int(np.searchsorted(before, total * s / n_shards))
        cand = [allowed[q] for q in (j - 1, j) if 0 <= q < allowed.size]
        best = min(cand, key=lambda p: abs(cum[p - 1] - total * s / n_shards))
        if best > cuts[-1]:
            cuts.append(int(best))
    cuts.append(n)
    return [(a, b) for a, b in zip(cuts[:-1], cuts[1:]) if b > a]


def _compact(idx: np.ndarray):
    """A shard's indices as ("range", a, b) when contiguous (a full check), else the int64 array."""
    if idx.size and int(idx[-1]) - int(idx[0]) == idx.size - 1 and np.all(np.diff(idx) == 1):
        return ("range", int(idx[0]), int(idx[-1]) + 1)
    return np.ascontiguousarray(idx, dtype=np.int64)


def _expand(shard):
    if isinstance(shard, tuple) and shard and shard[0] == "range":
        return slice(shard[1], shard[2])  # a slice: no duplicate check needed (np.unique of 10^6 indices costs ~1 s)
    return np.asarray(shard, dtype=np.int64)


# ----------------------------------------------------------------------------- the worker side

def check_shard(common: dict, shard, n_threads=None):
    """Check one shard on a worker: plain data in, a GradcheckReport (plain Python and NumPy) out.

    ``common``: {"kind": "network", "net": {layer_dims, hidden, output, loss, alpha, theta}, "args": (X, Y),
    "kwargs": {...}} or {"kind": "function", "args": (cost_fn, params, grads), "kwargs": {...}}; ``shard``: the
    coordinates (("range", a, b) or an index array). Runs the public ``dk.gradcheck`` with ``indices=shard``."""
    from .gradient_check import gradcheck

    t0 = time.perf_counter()
    args = tuple(common["args"])
    if common["kind"] == "network":
        from .network import Network

        spec = common["net"]
        net = Network(list(spec["layer_dims"]), spec["hidden"], spec["output"], spec["loss"], "float64",
                      alpha=spec["alpha"])
        net.theta = spec["theta"]
        args = (net, *args)
    kwargs = dict(common["kwargs"], mode="full", indices=_expand(shard))
    from . import _threads

    with _threads.using(n_threads):
        used = _threads.native_threads()  # what the native core reads during this check
        report = gradcheck(*args, **kwargs)
    report.shard_stats = [{"n": int(report.n_checked), "seconds": time.perf_counter() - t0, "n_threads": int(used),
                           "worker": _where()}]
    return report


def _where() -> str:
    import sys

    if "distributed" in sys.modules:  # never import dask (seconds) just to say where we are
        try:
            from distributed import get_worker

            return get_worker().address
        except Exception:
            pass
    return f"{socket.gethostname()}:{os.getpid()}"


# ----------------------------------------------------------------------------- the client side

def sharded_gradcheck(fn, args, kwargs, *, executor, n_threads=None, n_shards=None, progress=None, timeout=None):
    """``gradcheck(*args, **kwargs)`` sharded over ``executor`` (see the module doc)."""
    from . import _validation as V
    from .gradient_check import GradcheckReport, _select
    from .network import Network

    runner = _Runner(executor)
    bound = inspect.signature(fn).bind(*args, **kwargs)
    bound.apply_defaults()
    a = dict(bound.arguments)
    mode = a["mode"]
    if mode == "directional":
        raise ValueError("mode='directional' is a few passes in one call and is not sharded; run it without "
                         "executor= (or use mode='full' / 'sample')")
    if n_shards is not None:
        n_shards = V.check_positive_int(n_shards, "n_shards")
    if progress is not None:
        progress = V.check_bool(progress, "progress")
    if timeout is not None:
        timeout = V.check_nonneg(timeout, "timeout")
    # 1. validate exactly as the serial call does (it raises the same errors), on zero coordinates
    probe = fn(*args, **dict(kwargs, mode="full", indices=np.zeros(0, np.int64)))
    layout = probe._layout
    idx = _select(layout.size, a["indices"], layout, mode, a["k"], a["rng"])
    target = a["net_or_fn"]
    rest = {key: v for key, v in a.items() if key not in ("net_or_fn", "X_or_params", "Y_or_grads", "mode", "k",
                                                           "indices", "rng", "n_directions")}
    if isinstance(target, Network):
        net = target
        spec = {"layer_dims": [int(d) for d in net.layer_dims], "hidden": net.hidden, "output": net.output,
                "loss": net.loss, "alpha": float(net.alpha),
                "theta": np.array(net.theta, dtype=np.float64)}  # a copy: the check sees the theta of now
        common = {"kind": "network", "net": spec, "args": (a["X_or_params"], a["Y_or_grads"]), "kwargs": rest}
        m = int(np.shape(a["X_or_params"])[1])
        fast = (a["engine_options"] or {}).get("fast_path", True)
        costs = coordinate_costs(net.layer_dims, m, np.sort(idx), hidden=net.hidden, fast_path=fast)
        keys = _unit_keys(net.layer_dims, np.sort(idx))
    else:
        common = {"kind": "function", "args": (target, a["X_or_params"], a["Y_or_grads"]), "kwargs": rest}
        costs = np.ones(idx.size)
        keys = np.arange(idx.size)
    order = np.argsort(idx, kind="stable")
    sidx = idx[order]
    workers = runner.workers()
    plan = plan_shards(costs, keys, n_shards if n_shards is not None else 4 * workers)
    shards = [sidx[s:e] for s, e in plan]
    # 2. run
    t0 = time.perf_counter()
    shared = runner.share(common)
    items = [(shared, _compact(sh), n_threads) for sh in shards]
    results, complete = runner.run(check_shard, items, progress, timeout, "gradcheck",
                                   interrupted=lambda r: not r.complete)
    wall = time.perf_counter() - t0
    got = [r for r in results if r is not None]
    # 3. merge, in the serial order
    if got:
        merged = GradcheckReport.merge(got)
    else:
        merged = GradcheckReport.merge([probe])
    report = _in_order(merged, idx, mode, probe)
    missing = np.setdiff1d(idx, report.indices).astype(np.int64)
    report.complete = complete and missing.size == 0
    report.missing_indices = missing
    stats = []
    for (s, e), r in zip(plan, results):
        row = {"start": int(s), "stop": int(e), "cost": float(costs[s:e].sum()), "done": r is not None and r.complete}
        if r is not None and r.shard_stats:
            row.update(r.shard_stats[0])
        stats.append(row)
    report.shard_stats = stats
    report.sharding = {"n_shards": len(plan), "workers": workers, "wall_seconds": wall,
                       "busy_seconds": float(sum(r.get("seconds", 0.0) for r in stats))}
    return report


def _in_order(merged, idx, mode, probe):
    """The merged report with its coordinates in the serial call's order (``merge`` sorts by index)."""
    pos = np.searchsorted(merged.indices, idx)
    keep = (pos < merged.indices.size)
    keep[keep] = merged.indices[pos[keep]] == idx[keep]  # a partial report: the checked ones, in serial order
    pos = pos[keep]
    if merged.mode == mode and np.array_equal(merged.indices, idx):
        report = merged
    else:
        report = merged._reordered(pos, mode, probe.cost)   # keeps one-sided kink values and named mistakes
    return report
