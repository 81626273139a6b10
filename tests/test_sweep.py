"""dk.sweep: one network per grid configuration, the same table here, on a thread pool or a process pool
(the Dask LocalCluster runs are in tests/test_dask.py)."""
from __future__ import annotations

import json
import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import numpy as np
import pytest

import dnnkit as dk
from dnnkit.cli import main

GRID = {"l2": [0.0, 0.7], "keep_prob": [1.0, 0.8], "optimizer": ["gd", "adam"]}
KW = dict(layers=(8, 3), epochs=60, learning_rate=0.05, seed=0)


@pytest.fixture(scope="module")
def moons():
    X, Y = dk.datasets.moons(m=240, seed=0)
    s = dk.data.split(X, Y, fractions=(0.75, 0.25), seed=0)
    return s.X_train, s.Y_train, s.X_dev, s.Y_dev


@pytest.fixture(scope="module")
def local(moons):
    X, Y, Xd, Yd = moons
    return dk.sweep(GRID, X, Y, validation=(Xd, Yd), keep_models=True, **KW)


def test_table_best_and_models(moons, local):
    X, Y, Xd, Yd = moons
    assert len(local) == 8 and local.complete
    assert [r["config"] for r in local] == [
        {"l2": a, "keep_prob": b, "optimizer": c} for a in (0.0, 0.7) for b in (1.0, 0.8) for c in ("gd", "adam")]
    assert local.varied == ["l2", "keep_prob", "optimizer"]
    best = local.best
    assert best["dev_error"] == min(r["dev_error"] for r in local)
    # each row is what training that configuration by hand gives (the oracle: fit itself, bit for bit)
    for i in (0, 5):
        cfg = local[i]["config"]
        net = dk.Network([2, 8, 3, 1])
        net.initialize(None, rng=0)
        net.fit(X, Y, epochs=60, learning_rate=0.05, optimizer=cfg["optimizer"], l2=cfg["l2"],
                keep_prob=cfg["keep_prob"], validation=(Xd, Yd), seed=0, log_every=1)
        assert np.array_equal(net.theta, local.models[i].theta)
        assert local[i]["dev_error"] == net.evaluate(Xd, Yd)["error"]
        assert local[i]["train_error"] == net.evaluate(X, Y)["error"]
        diag = dk.diagnose.bias_variance(local[i]["train_error"], local[i]["dev_error"])
        assert local[i]["verdict"] == diag.verdict
        assert 1 <= local[i]["best_epoch"] <= 60
    text = str(local)
    assert "best (*)" in text and "keep_prob" in text and text.count("\n") >= 10
    d = local.to_dict()
    json.dumps(d)  # plain data
    assert d["best_index"] == local.best_index and len(d["rows"]) == 8 and "model" not in d["rows"][0]


def test_threads_and_processes_give_the_same_table(moons, local):
    X, Y, Xd, Yd = moons
    want = local.to_dict(volatile=False)
    with ThreadPoolExecutor(2) as ex:
        got = dk.sweep(GRID, X, Y, validation=(Xd, Yd), executor=ex, n_threads=1, progress=False, **KW)
    assert got.to_dict(volatile=False) == want
    assert {r["n_threads"] for r in got} == {1}
    with ProcessPoolExecutor(2, mp_context=mp.get_context("spawn")) as ex:
        got = dk.sweep(GRID, X, Y, validation=(Xd, Yd), executor=ex, keep_models=True, progress=False, **KW)
    assert got.to_dict(volatile=False) == want
    for a, b in zip(got.models, local.models):
        assert np.array_equal(a.theta, b.theta)


def test_layers_init_and_learning_rate_grid(moons):
    X, Y, Xd, Yd = moons
    grid = [{"layers": [(4,), (6, 3)], "init": ["he", "glorot"]}, {"learning_rate": [0.01, 0.1]}]
    res = dk.sweep(grid, X, Y, validation=(Xd, Yd), epochs=20, keep_models=True)
    assert len(res) == 6
    assert [list(m.layer_dims) for m in res.models[:4]] == [[2, 4, 1], [2, 4, 1], [2, 6, 3, 1], [2, 6, 3, 1]]
    assert res.setting(res[4], "layers") == (20, 3) and res.setting(res[5], "learning_rate") == 0.1


def test_plot(local):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    fig = local.plot()
    assert len(fig.axes) == 3 and [a.get_xlabel() for a in fig.axes] == ["l2", "keep_prob", "optimizer"]
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_bad_input_names_the_configuration(moons):
    X, Y, Xd, Yd = moons
    with pytest.raises(TypeError, match="validation"):
        dk.sweep({"l2": [0.0]}, X, Y)
    with pytest.raises(ValueError, match="unknown grid keys"):
        dk.sweep({"lambda": [0.0]}, X, Y, validation=(Xd, Yd))
    with pytest.raises(ValueError, match=r"configuration 1 .*keep_prob"):
        dk.sweep({"keep_prob": [1.0, 1.5]}, X, Y, validation=(Xd, Yd))
    with pytest.raises(ValueError, match="optimizer"):
        dk.sweep({"optimizer": ["sgd"]}, X, Y, validation=(Xd, Yd))
    with pytest.raises(ValueError, match="empty"):
        dk.sweep({"l2": []}, X, Y, validation=(Xd, Yd))
    with pytest.raises(ValueError, match="rows"):
        dk.sweep({"l2": [0.0]}, X, Y, validation=(Xd[:1], Yd))
    with pytest.raises(ValueError, match="models were not kept"):
        dk.sweep({"l2": [0.0]}, X, Y, validation=(Xd, Yd), epochs=1).models


def test_cli_sweep_here(tmp_path, capsys):
    rc = main(["sweep", "--data", "moons", "--l2", "0,0.7", "--keep-prob", "1,0.86", "--epochs", "30",
               "--no-progress", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0 and "Sweep: 4 of 4 configurations" in out and "best (*)" in out
    d = json.loads((tmp_path / "sweep.json").read_text())
    assert [r["config"] for r in d["rows"]] == [{"l2": a, "keep_prob": b} for a in (0.0, 0.7) for b in (1.0, 0.86)]


def test_cli_sweep_bad_values(capsys):
    assert main(["sweep", "--data", "moons", "--l2", "0,x"]) == 2
    assert main(["sweep", "--data", "moons", "--workers", "2", "--scheduler", "tcp://127.0.0.1:1"]) == 2
    assert main(["sweep", "--data", "moons", "--optimizer", "sgd", "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert "sgd" in err
