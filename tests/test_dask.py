"""A real dask.distributed LocalCluster: two worker processes (nanny-managed, one thread each) on 127.0.0.1,
no dashboard, started once for the module. Every wait is bounded: the client's connect timeout,
wait_for_workers(timeout=), and timeout= on every gradcheck / sweep / result."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")

import dnnkit as dk  # noqa: E402
from dnnkit.cli import main  # noqa: E402
from test_distributed import assert_same_report, buggy_grads, problem  # noqa: E402

T = 120  # seconds: the bound on any single wait below (a healthy run takes a few seconds)


def _cluster(n_workers, threads):
    return distributed.LocalCluster(n_workers=n_workers, threads_per_worker=threads, processes=True,
                                    host="127.0.0.1", dashboard_address="127.0.0.1:0",
                                    scheduler_kwargs={"dashboard": False}, worker_dashboard_address="127.0.0.1:0")


@pytest.fixture(scope="module")
def cluster():
    with _cluster(2, 1) as c:
        yield c


@pytest.fixture(scope="module")
def client(cluster):
    with distributed.Client(cluster, timeout=T) as cl:
        cl.wait_for_workers(2, timeout=T)
        yield cl


@pytest.fixture(scope="module")
def moons():
    X, Y = dk.datasets.moons(m=200, seed=1)
    s = dk.data.split(X, Y, fractions=(0.75, 0.25), seed=0)
    return s.X_train, s.Y_train, s.X_dev, s.Y_dev


GRID = {"l2": [0.0, 0.1, 0.7], "keep_prob": [1.0, 0.86]}
KW = dict(layers=(10, 3), epochs=80, learning_rate=0.05, seed=0)


def test_workers_are_what_dask_made_them(client):
    env = client.run(lambda: os.environ.get("OMP_NUM_THREADS"))
    assert list(env.values()) == ["1", "1"]           # the nanny's setting, which dnnkit must not obey blindly
    hosts = {addr.split("://")[1].rsplit(":", 1)[0] for addr in client.nthreads()}
    assert hosts == {"127.0.0.1"} and set(client.nthreads().values()) == {1}


@pytest.mark.parametrize("mode", ["full", "sample"])
def test_sharded_gradcheck_on_the_cluster_equals_serial(client, mode):
    net, X, Y = problem(dims=(9, 16, 8, 3), m=48, hidden="tanh")
    g = buggy_grads(net, X, Y, 0.3)
    kw = dict(grads=g, l2=0.3, keep_prob=0.8, seed=5, mode=mode, k=6, rng=2)
    serial = dk.gradcheck(net, X, Y, **kw)
    assert serial.verdict == "bug"
    for ex in (client.get_executor(), client):
        got = dk.gradcheck(net, X, Y, executor=ex, timeout=T, progress=False, **kw)
        assert_same_report(serial, got)
        workers = {s["worker"] for s in got.shard_stats}
        assert workers <= set(client.nthreads()) and len(workers) == 2  # both workers took shards
        assert {s["n_threads"] for s in got.shard_stats} == {1}         # the cores Dask gave each worker


def test_thread_counts_are_what_was_asked(client, moons):
    net, X, Y = problem(dims=(9, 16, 8, 3), m=48)
    r = dk.gradcheck(net, X, Y, executor=client, n_threads=2, timeout=T, progress=False)
    assert {s["n_threads"] for s in r.shard_stats} == {2}
    Xt, Yt, Xd, Yd = moons
    res = dk.sweep({"l2": [0.0, 0.1]}, Xt, Yt, validation=(Xd, Yd), executor=client, n_threads=3, timeout=T,
                   progress=False, epochs=5)
    assert [row["n_threads"] for row in res] == [3, 3]
    # and afterwards the worker's process setting is back (OpenMP's default there: 1, from the nanny)
    assert set(client.run(dk.get_num_threads).values()) == {1}


def test_default_inside_a_worker_is_the_threads_dask_gave_it():
    """A worker given 2 threads uses 2 for a call without n_threads (its OpenMP default would say 1)."""
    net, X, Y = problem(dims=(5, 6, 1), m=20)
    with _cluster(1, 2) as c, distributed.Client(c, timeout=T) as cl:
        cl.wait_for_workers(1, timeout=T)
        assert set(cl.run(dk.get_num_threads).values()) == {1}       # OMP_NUM_THREADS=1 from the nanny
        r = dk.gradcheck(net, X, Y, executor=cl, n_shards=2, timeout=T, progress=False)
        assert {s["n_threads"] for s in r.shard_stats} == {2}


def test_sweep_on_the_cluster_equals_the_local_sweep(client, moons):
    X, Y, Xd, Yd = moons
    local = dk.sweep(GRID, X, Y, validation=(Xd, Yd), keep_models=True, **KW)
    got = dk.sweep(GRID, X, Y, validation=(Xd, Yd), executor=client.get_executor(), keep_models=True, timeout=T,
                   progress=False, **KW)
    assert got.complete and len(got) == 6
    assert got.to_dict(volatile=False) == local.to_dict(volatile=False)
    for a, b in zip(got.models, local.models):
        assert np.array_equal(a.theta, b.theta)
    assert {r["worker"] for r in got} <= set(client.nthreads())


def test_cli_sweep_on_a_scheduler(client, capsys, tmp_path):
    args = ["sweep", "--data", "moons", "--l2", "0,0.7", "--keep-prob", "1,0.86", "--epochs", "20", "--no-progress"]
    rc = main(args + ["--scheduler", client.scheduler.address, "--out", str(tmp_path / "dask")])
    out = capsys.readouterr().out
    assert rc == 0 and "dask: 2 workers" in out and "Sweep: 4 of 4 configurations" in out
    assert main(args + ["--out", str(tmp_path / "here")]) == 0

    def table(where):
        rows = json.loads((tmp_path / where / "sweep.json").read_text())["rows"]
        return [{k: v for k, v in r.items() if k not in ("seconds", "n_threads", "worker")} for r in rows]

    assert table("dask") == table("here") and len(table("here")) == 4


def test_gridsearchcv_with_joblibs_dask_backend(client):
    joblib = pytest.importorskip("joblib")
    model_selection = pytest.importorskip("sklearn.model_selection")
    from dnnkit.sklearn import DNNClassifier

    X, Y = dk.datasets.moons(m=150, seed=2)
    Xr, y = X.T, Y.ravel().astype(int)
    grid = {"l2": [0.0, 0.5], "keep_prob": [1.0, 0.86]}
    est = DNNClassifier(hidden_layer_sizes=(8,), max_iter=40, learning_rate=0.05, random_state=0)
    serial = model_selection.GridSearchCV(est, grid, cv=3).fit(Xr, y)
    with joblib.parallel_backend("dask", client=client):
        on_dask = model_selection.GridSearchCV(est, grid, cv=3, n_jobs=-1).fit(Xr, y)
    assert on_dask.best_params_ == serial.best_params_
    for key in ("mean_test_score", "std_test_score", "rank_test_score"):
        assert np.array_equal(on_dask.cv_results_[key], serial.cv_results_[key])
    assert np.array_equal(on_dask.best_estimator_.network_.theta, serial.best_estimator_.network_.theta)


class KillOnce(distributed.WorkerPlugin):
    """Kills its worker process (os._exit, as a crash would) when the first sweep task starts executing
    there, once: the marker file records it for every worker, the restarted one included."""

    name = "dnnkit-kill-once"

    def __init__(self, marker):
        self.marker = marker

    def transition(self, key, start, finish, **kwargs):
        from dask.utils import key_split

        if finish == "executing" and key_split(key) == "train_config":
            try:
                fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                return
            os.write(fd, str(os.getpid()).encode())
            os.close(fd)
            os._exit(1)


def test_a_worker_killed_mid_sweep_is_retried_and_the_result_is_identical(client, moons, tmp_path):
    X, Y, Xd, Yd = moons
    local = dk.sweep(GRID, X, Y, validation=(Xd, Yd), **KW)
    marker = str(tmp_path / "killed")
    before = set(client.nthreads())
    client.register_plugin(KillOnce(marker))
    try:
        got = dk.sweep(GRID, X, Y, validation=(Xd, Yd), executor=client.get_executor(), timeout=T, progress=False,
                       **KW)
    finally:
        client.unregister_worker_plugin(KillOnce.name)
    assert os.path.exists(marker)                     # a worker really died mid-sweep ...
    with open(marker) as f:
        killed_pid = int(f.read())
    assert killed_pid != os.getpid()
    assert got.complete and len(got) == len(local)    # ... and the sweep is still complete and identical
    assert got.to_dict(volatile=False) == local.to_dict(volatile=False)
    client.wait_for_workers(2, timeout=T)             # the nanny restarted it (a new address)
    assert set(client.nthreads()) != before


def test_cli_sweep_starts_its_own_local_cluster(capsys):
    rc = main(["sweep", "--data", "moons", "--l2", "0,0.7", "--epochs", "10", "--no-progress", "--workers", "1"])
    out = capsys.readouterr().out
    assert rc == 0 and "dask: 1 workers at tcp://127.0.0.1:" in out and "Sweep: 2 of 2" in out
