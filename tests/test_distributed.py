"""Sharded gradient checks and threads per call (dnnkit.distributed, dnnkit._threads).

The sharded report must equal the serial one bit for bit: np.array_equal on every array, equal findings, verdict
and printed table. Executors are real: a spawn-context ProcessPoolExecutor (fork after OpenMP is not safe with
libgomp), a multiprocessing Pool's map / imap, the built-in map, a ThreadPoolExecutor, and a real
dask.distributed LocalCluster (worker processes on 127.0.0.1) in tests/test_dask.py.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import numpy as np
import pytest

import dnnkit as dk
from dnnkit import distributed as D
from _signals import python_sigint  # noqa: E402


def assert_same_report(a, b):
    """Every number bit for bit, the same findings, verdict, stats and printed table."""
    assert a.mode == b.mode and a.engine == b.engine and a.eps == b.eps
    for name in ("indices", "approx", "grad", "flags"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and np.array_equal(x, y), name
    assert (a._theta_vals is None) == (b._theta_vals is None)
    if a._theta_vals is not None:
        assert np.array_equal(a._theta_vals, b._theta_vals)
    assert [c.to_dict() for c in a.components] == [c.to_dict() for c in b.components]
    assert a.verdict == b.verdict and float(a) == float(b) and a.difference == b.difference
    assert a.engine_stats == b.engine_stats and a.cost == b.cost
    assert b.complete and a.complete
    assert str(a) == str(b)
    assert a.to_dict() == b.to_dict()


def problem(dims=(6, 9, 7, 3), hidden="relu", m=40, seed=0):
    rng = np.random.default_rng(seed)
    out = "softmax" if dims[-1] > 1 else "sigmoid"
    net = dk.Network(list(dims), hidden=hidden, output=out)
    net.initialize(rng=seed + 1)
    X = rng.standard_normal((dims[0], m))
    Y = np.eye(dims[-1])[:, rng.integers(0, dims[-1], m)] if out == "softmax" else \
        (rng.random((1, m)) > 0.5).astype(float)
    return net, X, Y


def buggy_grads(net, X, Y, l2):
    g = {k: v.copy() for k, v in net.backward(X, Y, l2=l2).items()}
    g["db1"] *= 2.0          # a named finding in a small block
    g["dW2"][3, :] = 0.0     # a zero row
    return g


@pytest.fixture(scope="module")
def spawn_pool():
    with ProcessPoolExecutor(2, mp_context=mp.get_context("spawn")) as ex:
        yield ex


CASES = {
    "relu-full": dict(l2=0.2),
    "tanh-dropout": dict(l2=0.1, keep_prob=0.8, seed=3),
    "sample": dict(l2=0.2, mode="sample", k=5, rng=3),
    "general-path": dict(l1=0.05, engine_options={"fast_path": False}),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_process_pool_equals_serial(spawn_pool, case):
    kw = dict(CASES[case])
    net, X, Y = problem(hidden="tanh" if "tanh" in case else "relu")
    g = buggy_grads(net, X, Y, kw.get("l2", 0.0))
    serial = dk.gradcheck(net, X, Y, grads=g, **kw)
    assert serial.verdict == "bug"  # the findings are worth comparing
    sharded = dk.gradcheck(net, X, Y, grads=g, executor=spawn_pool, progress=False, **kw)
    assert_same_report(serial, sharded)
    assert len(sharded.shard_stats) > 1 and all(s["done"] for s in sharded.shard_stats)
    assert {s["worker"] for s in sharded.shard_stats} - {f"{os.uname()[1]}:{os.getpid()}"}  # ran elsewhere


def test_own_backward_and_permuted_indices(spawn_pool):
    """grads=None: each worker runs the serial check's float64 backward; user indices in any order keep it."""
    net, X, Y = problem(dims=(5, 8, 8, 1), m=33)
    net32 = dk.Network([5, 8, 8, 1], dtype="float32")
    net32.theta = net.theta
    idx = np.random.default_rng(1).permutation(net.n_params)[:60]
    for n in (net, net32):
        serial = dk.gradcheck(n, X, Y, l2=0.3, indices=idx)
        assert_same_report(serial, dk.gradcheck(n, X, Y, l2=0.3, indices=idx, executor=spawn_pool, n_shards=7))


@pytest.mark.parametrize("how", ["builtin-map", "pool-map", "pool-imap", "threads"])
def test_map_callables_and_threads(how):
    net, X, Y = problem(dims=(7, 12, 5, 1), m=50)
    g = buggy_grads(net, X, Y, 0.5)
    serial = dk.gradcheck(net, X, Y, grads=g, l2=0.5)
    if how == "builtin-map":
        got = dk.gradcheck(net, X, Y, grads=g, l2=0.5, executor=map, n_shards=5)
    elif how == "threads":
        with ThreadPoolExecutor(3) as ex:
            got = dk.gradcheck(net, X, Y, grads=g, l2=0.5, executor=ex, n_threads=1)
    else:
        with mp.get_context("spawn").Pool(2) as pool:
            got = dk.gradcheck(net, X, Y, grads=g, l2=0.5, executor=pool.map if how == "pool-map" else pool.imap)
    assert_same_report(serial, got)


def test_cost_function_is_sharded_too():
    rng = np.random.default_rng(0)
    theta = rng.standard_normal(30)
    grads = np.cos(theta) * 2
    grads[4] += 1e-3
    serial = dk.gradcheck(_sin_sum, theta, grads)
    assert_same_report(serial, dk.gradcheck(_sin_sum, theta, grads, executor=map, n_shards=4))


def _sin_sum(th):  # module level: picklable for worker processes
    return float(np.sum(2 * np.sin(th)))


def test_shards_follow_the_cost_model():
    dims = [20, 30, 30, 2]
    n = sum(dims[l] * dims[l - 1] + dims[l] for l in range(1, 4))
    idx = np.arange(n)
    costs = D.coordinate_costs(dims, 10, idx, hidden="tanh")
    # general path: a coordinate of W1 propagates through W2 and W3; one of W3 only changes the loss
    assert costs[0] == 10 * (20 * 31 + 30 * 30 + 2 * 30 + 20 * 2) and costs[-1] == 10 * (20 * 1 + 20 * 2)
    plan = D.plan_shards(costs, D._unit_keys(dims, idx), 8)
    assert plan[0][0] == 0 and plan[-1][1] == n and all(a[1] == b[0] for a, b in zip(plan, plan[1:]))
    sizes = [e - s for s, e in plan]
    cost = [costs[s:e].sum() for s, e in plan]
    assert sizes[0] < sizes[-1]  # fewer coordinates per shard in early layers
    assert max(cost) < 2.0 * np.mean(cost)
    for s, _ in plan[1:]:  # cuts between units (rows of W[l]) or at a bias
        assert D._unit_keys(dims, [s])[0] == s
    # the relu fast path: the same cost everywhere, so equal-sized shards
    fast = D.coordinate_costs(dims, 10, idx, hidden="relu")
    assert np.all(fast == fast[0])
    assert not np.all(D.coordinate_costs(dims, 10, idx, hidden="relu", fast_path=False) == fast[0])
    sizes = [e - s for s, e in D.plan_shards(fast, D._unit_keys(dims, idx), 4)]
    assert max(sizes) - min(sizes) <= 30 + 1


def test_bad_arguments_raise_before_anything_runs():
    net, X, Y = problem()
    with pytest.raises(TypeError, match="executor"):
        dk.gradcheck(net, X, Y, executor=42)
    with pytest.raises(ValueError, match="directional"):
        dk.gradcheck(net, X, Y, mode="directional", executor=map)
    with pytest.raises(ValueError, match="X has"):          # the serial check's own message
        dk.gradcheck(net, X[:3], Y, executor=map)
    with pytest.raises(ValueError, match="seed"):
        dk.gradcheck(net, X, Y, keep_prob=0.5, executor=map)
    with pytest.raises(ValueError, match="n_shards"):
        dk.gradcheck(net, X, Y, executor=map, n_shards=0)
    with pytest.raises(ValueError, match="executor"):
        dk.gradcheck(net, X, Y, n_shards=3)
    with pytest.raises(TypeError, match="n_threads"):
        dk.gradcheck(net, X, Y, n_threads=1.5)
    with pytest.raises(ValueError, match="n_threads"):
        dk.gradcheck(net, X, Y, n_threads=0)


def _interrupt_after(n_items):
    """A lazy map (like Pool.imap) that raises Ctrl-C in this process after n_items results."""
    def mapper(fn, items):
        for i, item in enumerate(items):
            if i == n_items:
                os.kill(os.getpid(), signal.SIGINT)  # the handler runs at the next bytecode boundary
            yield fn(item)
    return mapper


@pytest.fixture
def sigint_raises():
    """Our own SIGINT handler (the suite must pass under `trap "" INT`): the suite's one helper."""
    with python_sigint():
        yield


def test_ctrl_c_returns_partial_report_marked_incomplete(sigint_raises):
    net, X, Y = problem(dims=(8, 10, 6, 1), m=30)
    serial = dk.gradcheck(net, X, Y, l2=0.1)
    part = dk.gradcheck(net, X, Y, l2=0.1, executor=_interrupt_after(3), n_shards=8, progress=False)
    assert not part.complete and not bool(part)
    assert 0 < part.n_checked < serial.n_checked
    assert part.missing_indices.size + part.n_checked == serial.n_checked
    assert np.array_equal(np.union1d(part.checked_indices, part.missing_indices), serial.indices)
    pos = np.searchsorted(serial.indices, part.indices)
    assert np.array_equal(part.approx, serial.approx[pos]) and np.array_equal(part.flags, serial.flags[pos])
    assert "INCOMPLETE" in str(part) and part.to_dict()["complete"] is False
    assert sum(s["done"] for s in part.shard_stats) == 3


def test_ctrl_c_cancels_outstanding_executor_shards(sigint_raises):
    net, X, Y = problem(dims=(8, 10, 6, 1), m=30)
    serial = dk.gradcheck(net, X, Y)
    started = []

    class Interrupting(ThreadPoolExecutor):
        def submit(self, fn, *args, **kwargs):
            fut = super().submit(fn, *args, **kwargs)
            started.append(fut)
            if len(started) == 2:  # Ctrl-C in the main thread as soon as the second shard is done
                fut.add_done_callback(lambda _: os.kill(os.getpid(), signal.SIGINT))
            return fut

    with Interrupting(1) as ex:
        part = dk.gradcheck(net, X, Y, executor=ex, n_shards=10, progress=False)
    assert not part.complete
    assert 0 < part.n_checked < serial.n_checked
    assert any(f.cancelled() for f in started)  # outstanding shards were cancelled, not run
    pos = np.searchsorted(serial.indices, part.indices)
    assert np.array_equal(part.approx, serial.approx[pos])


def test_timeout_raises_and_cancels():
    net, X, Y = problem()

    def slow(fn, items):
        for item in items:
            yield fn(item)
            threading.Event().wait(0.3)

    with pytest.raises(TimeoutError):
        dk.gradcheck(net, X, Y, executor=slow, n_shards=6, timeout=0.1, progress=False)


# ----------------------------------------------------------------------------- threads per call

def test_n_threads_is_applied_per_call_and_restored():
    net, X, Y = problem(dims=(4, 6, 1), m=20)
    dk.set_num_threads(0)
    base = dk.get_num_threads()
    seen = []

    class Record:
        def on_epoch_end(self, epoch, net, history):
            seen.append(dk.get_num_threads())

    net.fit(X, Y, epochs=2, n_threads=3, callbacks=[Record()], seed=0)
    assert seen == [3, 3] and dk.get_num_threads() == base
    h = net.fit(X, Y, epochs=1, n_threads=2, seed=0)
    assert h.config["n_threads"] == 2 and dk.get_num_threads() == base
    dk.set_num_threads(2)
    try:
        net.fit(X, Y, epochs=1, n_threads=1, seed=0, callbacks=[Record()])
        assert seen[-1] == 1 and dk.get_num_threads() == 2   # the process setting comes back
    finally:
        dk.set_num_threads(0)
    r = dk.gradcheck(net, X, Y, executor=map, n_threads=3, n_shards=2)
    assert [s["n_threads"] for s in r.shard_stats] == [3, 3] and dk.get_num_threads() == base


def test_results_do_not_depend_on_n_threads():
    net, X, Y = problem(dims=(6, 20, 9, 1), m=70)
    a = dk.gradcheck(net, X, Y, l2=0.1, n_threads=1)
    b = dk.gradcheck(net, X, Y, l2=0.1, n_threads=3)
    assert_same_report(a, b)
    n1, n3 = net.copy(), net.copy()
    n1.fit(X, Y, epochs=5, batch_size=16, keep_prob=0.8, seed=1, n_threads=1)
    n3.fit(X, Y, epochs=5, batch_size=16, keep_prob=0.8, seed=1, n_threads=3)
    assert np.array_equal(n1.theta, n3.theta)


def test_fit_rejects_bad_n_threads_and_changes_nothing():
    net, X, Y = problem(dims=(4, 6, 1), m=20)
    before = net.theta.copy()
    for bad, exc in ((0, ValueError), ("2", TypeError), (True, TypeError)):
        with pytest.raises(exc, match="n_threads"):
            net.fit(X, Y, epochs=1, n_threads=bad)
    assert np.array_equal(net.theta, before)


def test_progress_bar_counts_shards(capsys):
    pytest.importorskip("tqdm")
    net, X, Y = problem()
    dk.gradcheck(net, X, Y, executor=map, n_shards=5, progress=True)
    err = capsys.readouterr().err
    assert "5/5" in err and "shard" in err
    with pytest.raises(TypeError, match="progress"):
        dk.gradcheck(net, X, Y, executor=map, progress="yes")


def test_ctrl_c_during_a_sweep_returns_the_finished_configurations(sigint_raises):
    X, Y = dk.datasets.moons(m=120, seed=0)
    grid = {"l2": [0.0, 0.1, 0.7], "keep_prob": [1.0, 0.9]}
    full = dk.sweep(grid, X, Y, validation=(X, Y), epochs=10, layers=(4,))
    part = dk.sweep(grid, X, Y, validation=(X, Y), epochs=10, layers=(4,), executor=_interrupt_after(2),
                    progress=False)
    assert not part.complete and len(part) == 2 and "INCOMPLETE" in str(part)
    want = full.to_dict(volatile=False)["rows"][:2]
    assert part.to_dict(volatile=False)["rows"] == want


def test_ctrl_c_inside_a_shard_stops_the_sharded_check(sigint_raises):
    """Ctrl-C that lands inside a shard's own check (a plain in-process map; or a pool's worker processes, which
    share the terminal's process group) makes that shard come back incomplete: the sharded check stops there
    too instead of going on with the next shards. Wherever the signal lands, the result is incomplete and its
    numbers are the serial ones."""
    net, X, Y = problem(dims=(30, 120, 120, 5), m=64, hidden="tanh")

    def mapper(fn, items):
        for i, item in enumerate(items):
            if i == 1:
                threading.Timer(0.02, os.kill, (os.getpid(), signal.SIGINT)).start()
            yield fn(item)

    part = dk.gradcheck(net, X, Y, executor=mapper, n_shards=16, progress=False)
    assert not part.complete and not bool(part)
    assert 0 < part.n_checked < net.n_params
    assert part.missing_indices.size + part.n_checked == net.n_params
    ref = dk.gradcheck(net, X, Y, indices=part.indices)
    assert np.array_equal(part.approx, ref.approx) and np.array_equal(part.flags, ref.flags)
