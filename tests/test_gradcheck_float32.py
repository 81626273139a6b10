"""Gradients computed in float32 (a float32 backprop) are judged with float32 thresholds: correct float32
gradients are "correct" although they sit above the seeds' 2e-7, and a real bug is still a bug. The float32
gradients come from the test-side learner backprop run in float32 and from a float32 Network."""
import numpy as np
import pytest

import dnnkit as dk
from dnnkit.gradient_check import CORRECT_BELOW, CORRECT_BELOW_FLOAT32

import learner


def cases(n=24):
    rng = np.random.default_rng(0)
    for i in range(n):
        hidden = ["relu", "tanh", "sigmoid", "leaky_relu"][i % 4]
        out, loss, ny = [("sigmoid", "bce", 1), ("softmax", "ce", 3), ("linear", "mse", 2)][i % 3]
        dims = [int(rng.integers(2, 20))] + [int(rng.integers(2, 30)) for _ in range(int(rng.integers(1, 4)))] + [ny]
        m = int(rng.integers(1, 200))
        net = dk.Network(dims, hidden=hidden, output=out, loss=loss)
        net.initialize(rng=i)
        X = rng.standard_normal((dims[0], m))
        if loss == "bce":
            Y = (rng.random((ny, m)) < 0.5).astype(float)
        elif loss == "ce":
            Y = np.eye(ny)[:, rng.integers(0, ny, m)]
        else:
            Y = rng.standard_normal((ny, m))
        yield net, X, Y


def f32_grads(net, X, Y, l2):
    p = {k: v.astype(np.float32) for k, v in net.get_params().items()}
    return learner.backprop(X.astype(np.float32), Y.astype(np.float32), p, net.hidden, net.output, net.loss,
                            lambd=l2, alpha=net.alpha)


def test_correct_float32_gradients_are_correct_with_float32_thresholds():
    diffs = []
    for net, X, Y in cases(60):
        g = f32_grads(net, X, Y, 0.1)
        assert all(v.dtype == np.float32 for v in g.values())
        r = dk.gradcheck(net, X, Y, grads=g, l2=0.1)
        assert r.grad_dtype == "float32" and r.thresholds["correct_below"] == CORRECT_BELOW_FLOAT32
        assert r.verdict in ("correct", "unverified"), str(r)
        diffs.append(float(r))
        # dnnkit's own float32 backward, handed in as the user's gradient
        n32 = dk.Network(list(net.layer_dims), net.hidden, net.output, net.loss, dtype="float32")
        n32.theta = net.theta
        g2 = {k: v.copy() for k, v in n32.backward(X, Y, l2=0.1).items()}
        assert dk.gradcheck(net, X, Y, grads=g2, l2=0.1).verdict in ("correct", "unverified")
    # float32 rounding is real: the seeds' float64 cut-off would call some of these correct gradients "check"
    assert max(diffs) > CORRECT_BELOW and max(diffs) < CORRECT_BELOW_FLOAT32 / 5


def test_float32_report_says_which_thresholds_and_why():
    net, X, Y = next(cases())
    r = dk.gradcheck(net, X, Y, grads=f32_grads(net, X, Y, 0.0))
    s = str(r)
    assert "thresholds for a float32 gradient" in s and "1e-05" in s and "u32" in s
    d = r.to_dict()
    assert d["grad_dtype"] == "float32" and d["thresholds"]["correct_below"] == 1e-5 and "float32" in \
        d["thresholds"]["why"]
    r64 = dk.gradcheck(net, X, Y)
    assert r64.grad_dtype == "float64" and r64.thresholds["correct_below"] == CORRECT_BELOW
    assert "thresholds for a" not in str(r64)


@pytest.mark.parametrize("rel,verdict", [(1e-2, "bug"), (1e-4, "check")])
def test_float32_errors_are_still_found(rel, verdict):
    net, X, Y = list(cases(3))[1]
    g = f32_grads(net, X, Y, 0.0)
    g["dW1"] = (g["dW1"] * (1 + rel)).astype(np.float32)
    assert dk.gradcheck(net, X, Y, grads=g).verdict == verdict


def test_one_float32_array_makes_the_gradient_float32():
    net, X, Y = list(cases(3))[2]
    g = {k: v.astype(np.float64) for k, v in f32_grads(net, X, Y, 0.0).items()}
    assert dk.gradcheck(net, X, Y, grads=g).grad_dtype == "float64"
    g["db1"] = g["db1"].astype(np.float32)
    assert dk.gradcheck(net, X, Y, grads=g).grad_dtype == "float32"
    flat = np.concatenate([v.reshape(-1) for v in g.values()]).astype(np.float32)
    assert dk.gradcheck(net, X, Y, grads=flat).grad_dtype == "float32"
