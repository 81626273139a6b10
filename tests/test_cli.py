"""The dnnkit command line: every command runs and writes its outputs; bad input -> one line, exit 2."""
import os
import subprocess
import sys

import numpy as np
import pytest

import dnnkit as dk
from dnnkit.cli import main

pytest.importorskip("matplotlib")


def _run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_demo_quick_prints_tables_and_writes_figures(tmp_path, capsys):
    rc, out, err = _run(capsys, "demo", "--quick", "--out", str(tmp_path / "demo"))
    assert rc == 0, err
    for title in ("Initialization", "Regularization", "Gradient checking", "Vanishing / exploding"):
        assert title in out
    assert "gradient scaled by a constant: x2" in out and "x4" in out
    figs = sorted(os.listdir(tmp_path / "demo"))
    assert figs == sorted(["init_costs.png", "init_boundaries.png", "reg_costs.png", "reg_boundaries.png",
                           "gradcheck_buggy.png", "gradcheck_fixed.png", "propagation.png"])
    assert all(os.path.getsize(tmp_path / "demo" / f) > 2000 for f in figs)


def test_train_builtin_saves_model_and_figures(tmp_path, capsys):
    out_dir = tmp_path / "run"
    rc, out, err = _run(capsys, "train", "--data", "moons", "--epochs", "300", "--lr", "0.5", "--standardize",
                        "--early-stopping", "20", "--out", str(out_dir), "--no-progress", "--seed", "1")
    assert rc == 0, err
    for word in ("train ", "dev ", "test ", "verdict:", "model saved"):
        assert word in out
    for f in ("model.npz", "costs.png", "grad_norms.png", "boundary.png"):
        assert (out_dir / f).stat().st_size > 0
    net = dk.Network.load(out_dir / "model.npz")
    assert net.layer_dims == (2, 20, 3, 1) and net.normalizer is not None
    X, Y = dk.datasets.moons(seed=1)
    acc = np.mean(net.predict(net.normalizer.transform(X)) == Y)
    assert acc > 0.85


def test_train_football_multiclass_file_and_options(tmp_path, capsys):
    rc, out, err = _run(capsys, "train", "--data", "football", "--layers", "2,20,3,1", "--epochs", "200",
                        "--lr", "0.3", "--l2", "0.7", "--out", str(tmp_path / "fb"), "--no-progress", "--no-plots")
    assert rc == 0, err
    assert "football" in out and "train 211" in out
    # a CSV with integer classes 0..2 -> softmax; mini-batch adam with dropout and a progress bar
    X, Y = dk.datasets.blobs(m=120, seed=0, one_hot=False)
    path = tmp_path / "d.csv"
    np.savetxt(path, np.column_stack([X.T, Y.T]), delimiter=",", header="a,b,label", comments="")
    rc, out, err = _run(capsys, "train", "--data", str(path), "--epochs", "30", "--optimizer", "adam",
                        "--batch-size", "32", "--lr", "0.01", "--keep-prob", "0.9", "--split", "0.6,0.2,0.2",
                        "--out", str(tmp_path / "csv"))
    assert rc == 0, err
    assert "3 classes" in out and (tmp_path / "csv" / "model.npz").exists()
    assert "epoch" in err  # the progress bar goes to stderr
    # npz, regression target
    npz = tmp_path / "r.npz"
    Xr = np.random.default_rng(0).standard_normal((3, 80))
    np.savez(npz, X=Xr, Y=Xr.sum(axis=0, keepdims=True) + 0.5)
    rc, out, err = _run(capsys, "train", "--data", str(npz), "--epochs", "20", "--out", str(tmp_path / "npz"),
                        "--no-progress")
    assert rc == 0, err
    assert "mse" in out and "regression" in out


def test_gradcheck_fresh_and_saved(tmp_path, capsys):
    rc, out, err = _run(capsys, "gradcheck", "--layers", "4,5,3,1", "--m", "8", "--l2", "0.7")
    assert rc == 0, err
    assert "CORRECT" in out and "W1" in out and "b3" in out
    rc, out, _ = _run(capsys, "gradcheck", "--layers", "6,4,3", "--output", "softmax", "--hidden", "tanh",
                      "--keep-prob", "0.8", "--mode", "sample", "--k", "4", "--plot", str(tmp_path / "g.png"))
    assert rc == 0 and "sample" in out and (tmp_path / "g.png").stat().st_size > 2000
    rc, out, _ = _run(capsys, "gradcheck", "--layers", "6,4,1", "--mode", "directional")
    assert rc == 0 and "directional" in out
    net = dk.Network([2, 4, 1])
    net.initialize("he", rng=0)
    net.save(tmp_path / "m.npz")
    rc, out, _ = _run(capsys, "gradcheck", "--model", str(tmp_path / "m.npz"), "--data", "circles")
    assert rc == 0 and "circles" in out


def test_bench_quick(capsys):
    rc, out, err = _run(capsys, "bench", "--quick")
    assert rc == 0, err
    assert "forward+backward" in out and "gradcheck" in out and "speedup" in out


@pytest.mark.parametrize("argv, needle", [
    (["train", "--data", "no/such.csv"], "no such file"),
    (["train", "--data", "moons", "--epochs", "0"], "--epochs"),
    (["train", "--data", "moons", "--lr", "-1"], "--lr"),
    (["train", "--data", "moons", "--keep-prob", "1.5"], "--keep-prob"),
    (["train", "--data", "moons", "--layers", "3,4,1"], "--layers"),
    (["train", "--data", "moons", "--split", "0.5,0.2"], "--split"),
    (["train", "--data", "moons", "--optimizer", "sgdx"], "--optimizer"),
    (["gradcheck", "--layers", "4,x,1"], "--layers"),
    (["gradcheck"], "required"),
    (["gradcheck", "--model", "nope.npz"], "no such file"),
    (["frobnicate"], "invalid choice"),
], ids=["missing-file", "epochs-0", "negative-lr", "keep-prob", "layers-mismatch", "split-sum", "optimizer",
        "layers-text", "no-source", "missing-model", "unknown-command"])
def test_bad_input_one_line_exit_2(capsys, tmp_path, argv, needle):
    rc, out, err = _run(capsys, *argv)
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "error" in lines[0] and needle in lines[0]
    assert "Traceback" not in err


def test_bad_model_file_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a model")
    rc, _, err = _run(capsys, "gradcheck", "--model", str(bad))
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_python_dash_m_entry_point():
    env = dict(os.environ)
    import dnnkit  # the subprocess imports the same dnnkit as this test run (installed or in-tree)

    src = os.path.dirname(os.path.dirname(os.path.abspath(dnnkit.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    r = subprocess.run([sys.executable, "-m", "dnnkit", "--version"], capture_output=True, text=True, env=env,
                       timeout=300)
    assert r.returncode == 0 and r.stdout.startswith("dnnkit ")
    r = subprocess.run([sys.executable, "-m", "dnnkit", "train", "--data", "x.txt"], capture_output=True,
                       text=True, env=env, timeout=300)
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_demo_without_matplotlib_prints_tables(tmp_path):
    # `pip install .` alone has no matplotlib: the demo still runs and says how to get the figures
    import dnnkit

    env = dict(os.environ)
    src = os.path.dirname(os.path.dirname(os.path.abspath(dnnkit.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    code = ("import sys; sys.modules['matplotlib'] = None\n"
            "import importlib.util, dnnkit.cli as c\n"
            "_find = importlib.util.find_spec\n"
            "importlib.util.find_spec = lambda name, *a: None if name == 'matplotlib' else _find(name, *a)\n"
            f"sys.exit(c.main(['demo', '--quick', '--out', {str(tmp_path / 'figs')!r}]))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "Initialization" in r.stdout and "Gradient checking" in r.stdout
    assert "matplotlib is not installed" in r.stderr
    assert not (tmp_path / "figs").exists()


def test_gradcheck_names_the_mistake_in_your_gradients(tmp_path, capsys):
    import learner  # tests/learner.py: a learner's backprop with one planted mistake

    rng = np.random.default_rng(0)
    X = rng.standard_normal((3, 12))
    Y = (rng.random((1, 12)) < 0.5).astype(float)
    np.savez(tmp_path / "d.npz", X=X, Y=Y)
    net = dk.Network([3, 5, 4, 1], hidden="tanh")
    net.initialize(rng=1)
    net.save(tmp_path / "m.npz")
    bad = learner.backprop(X, Y, net.get_params(), "tanh", bug="no_derivative", at=2)
    np.savez(tmp_path / "g.npz", **bad)
    rc, out, err = _run(capsys, "gradcheck", "--model", str(tmp_path / "m.npz"), "--data", str(tmp_path / "d.npz"),
                        "--grads", str(tmp_path / "g.npz"), "--taylor")
    assert rc == 1, err
    assert "YOUR gradients" in out and "named mistakes" in out and "leaves out the activation derivative of layer 2" \
        in out and "fix layer 2 first" in out
    assert "Taylor test" in out and "BUG" in out
    good = learner.backprop(X, Y, net.get_params(), "tanh")
    np.savez(tmp_path / "ok.npz", **good)
    rc, out, _ = _run(capsys, "gradcheck", "--model", str(tmp_path / "m.npz"), "--data", str(tmp_path / "d.npz"),
                      "--grads", str(tmp_path / "ok.npz"))
    assert rc == 0 and "CORRECT" in out and "named mistakes" not in out
    np.savez(tmp_path / "short.npz", dW1=good["dW1"])
    rc, _, err = _run(capsys, "gradcheck", "--model", str(tmp_path / "m.npz"), "--data", str(tmp_path / "d.npz"),
                      "--grads", str(tmp_path / "short.npz"))
    assert rc == 2 and "db1" in err
    rc, _, err = _run(capsys, "gradcheck", "--layers", "3,2,1", "--grads", str(tmp_path / "nope.npz"))
    assert rc == 2 and "no such file" in err
