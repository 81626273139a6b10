"""dk.taylor_test: the remainder |J(theta + h d) - J(theta) - h g.d| converges at order 2 for the gradient and at
order 1 for a wrong one. Gradients under test come from dnnkit.reference (the oracle) with planted errors written
here; the expected rates (2 and 1) come from Taylor's theorem, not from the code under test."""
import math

import numpy as np
import pytest

import dnnkit as dk
from dnnkit import reference as ref


def make_case(dims, hidden="tanh", output="sigmoid", loss=None, m=24, seed=0):
    rng = np.random.default_rng(seed)
    net = dk.Network(dims, hidden=hidden, output=output, loss=loss)
    net.initialize(rng=seed + 1)
    X = rng.standard_normal((dims[0], m))
    if net.loss == "bce":
        Y = (rng.random((dims[-1], m)) < 0.5).astype(float)
    elif net.loss == "ce":
        Y = np.eye(dims[-1])[:, rng.integers(0, dims[-1], m)]
    else:
        Y = rng.standard_normal((dims[-1], m))
    return net, X, Y


def oracle(net, X, Y, **kw):
    _, g = ref.cost_and_gradients(X, Y, net.get_params(), net.hidden, net.output, net.loss, alpha=net.alpha, **kw)
    return g


@pytest.mark.parametrize("hidden,output,loss", [("tanh", "sigmoid", "bce"), ("sigmoid", "softmax", "ce"),
                                                ("tanh", "linear", "mse"), ("leaky_relu", "sigmoid", "mse")],
                         ids=["tanh-bce", "sigmoid-ce", "tanh-mse", "leaky-sigmoid-mse"])
def test_correct_gradient_converges_at_order_two(hidden, output, loss):
    net, X, Y = make_case([3, 5, 4, 3 if output == "softmax" else 2], hidden, output, loss)
    t = dk.taylor_test(net, X, Y, grads=oracle(net, X, Y, l2=0.4), l2=0.4)
    assert t.verdict == "correct", str(t)
    for c in t.components:
        assert abs(c.rate - 2.0) < 0.1, (c.name, c.rate)


def test_three_percent_error_in_one_block_is_rate_one_there_only():
    net, X, Y = make_case([4, 6, 5, 1], "tanh")
    g = oracle(net, X, Y)
    g["dW2"] = 1.03 * g["dW2"]
    t = dk.taylor_test(net, X, Y, grads=g)
    assert t.verdict == "bug"
    assert abs(t["W2"].rate - 1.0) < 0.15, str(t)
    for c in t.components:
        if c.name != "W2":
            assert abs(c.rate - 2.0) < 0.15, (c.name, c.rate)
            assert c.verdict == "correct"
    assert t["W2"].verdict == "bug" and [c.name for c in t.components if c.verdict != "correct"] == ["W2"]


def test_small_error_shows_as_order_one_with_small_enough_steps():
    # a 0.1 % error in db1: the linear term wins once h < ~1e-3 |delta.d| / |d'Hd|
    net, X, Y = make_case([3, 4, 1], "tanh", m=16, seed=3)
    g = oracle(net, X, Y)
    g["db1"] = g["db1"] * 1.001
    t = dk.taylor_test(net, X, Y, grads=g, h0=1e-4, n_steps=6)
    assert t["b1"].rate < 1.3 and t["W1"].rate > 1.8, str(t)


def test_net_backward_and_dropout_with_seed():
    net, X, Y = make_case([3, 6, 4, 1], "tanh", seed=5)
    t = dk.taylor_test(net, X, Y, keep_prob=0.7, seed=11)
    assert t.verdict == "correct", str(t)
    # the masks of seed 11 are not those of seed 12: a gradient with the other masks is wrong
    g = dict(net.backward(X, Y, keep_prob=0.7, seed=12))
    t2 = dk.taylor_test(net, X, Y, grads={k: v.copy() for k, v in g.items()}, keep_prob=0.7, seed=11)
    assert t2.verdict == "bug" and t2["W1"].rate < 1.3
    with pytest.raises(ValueError, match="seed"):
        dk.taylor_test(net, X, Y, keep_prob=0.7)


def test_cost_function_form():
    rng = np.random.default_rng(2)
    A = rng.standard_normal((5, 5))
    A = A @ A.T + np.eye(5)
    b = rng.standard_normal(5)

    def J(p):
        x = p["x"].reshape(-1)
        return 0.5 * x @ A @ x - b @ x + np.sum(np.cos(p["y"]))

    p = {"x": rng.standard_normal((5, 1)), "y": rng.standard_normal(3)}
    good = {"dx": A @ p["x"] - b[:, None], "dy": -np.sin(p["y"])}
    t = dk.taylor_test(J, p, good)
    assert t.verdict == "correct" and t.mode == "cost function"
    bad = {"dx": good["dx"], "dy": -0.97 * np.sin(p["y"])}
    t = dk.taylor_test(J, p, bad)
    assert t["x"].verdict == "correct" and t["y"].verdict == "bug" and abs(t["y"].rate - 1) < 0.15
    # flat parameters: one component named theta
    t = dk.taylor_test(lambda th: float(np.sum(th ** 3)), np.arange(1.0, 4.0), 3 * np.arange(1.0, 4.0) ** 2)
    assert [c.name for c in t.components] == ["theta"] and t.verdict == "correct"


def test_exactly_linear_direction_is_correct_not_unverified():
    # J linear in theta: every remainder is rounding; a correct g is "correct", a wrong one order 1
    c = np.array([1.0, -2.0, 0.5])
    t = dk.taylor_test(lambda th: float(c @ th), np.zeros(3), c)
    assert t.verdict == "correct" and "rounding" in t.components[0].reason
    t = dk.taylor_test(lambda th: float(c @ th), np.zeros(3), 1.1 * c)
    assert t.verdict == "bug"


def test_kink_at_theta_is_unverified_not_bug_or_correct():
    # ReLU net where b1 = 0 and W1 = 0 on one unit: Z1 = 0 for every example, a kink at theta along any direction
    # that moves that unit's pre-activation; the (correct, g'(0) = 0) gradient cannot be judged by a remainder
    net, X, Y = make_case([3, 4, 1], "relu", seed=7)
    net.params["W1"][0] = 0.0
    net.params["b1"][0] = 0.0
    t = dk.taylor_test(net, X, Y)
    assert t["b1"].verdict == "unverified" and "ReLU unit switches" in t["b1"].reason
    assert t.verdict == "unverified"
    assert t["W2"].verdict == "correct"


def test_report_outputs(tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    net, X, Y = make_case([3, 4, 1], "tanh")
    g = oracle(net, X, Y)
    g["dW1"] = g["dW1"] * 1.03
    t = dk.taylor_test(net, X, Y, grads=g, n_directions=3)
    s = str(t)
    assert "W1" in s and "BUG" in s and "rate" in s
    d = t.to_dict()
    assert d["verdict"] == "bug" and [c["name"] for c in d["components"]] == ["W1", "b1", "W2", "b2"]
    assert len(d["components"][0]["remainders"]) == 3 and len(d["components"][0]["h"]) == 8
    assert math.isclose(d["components"][0]["rate"], t["W1"].rate)
    ax = t.plot()
    lines = ax.get_lines()
    assert len(lines) == 4 + 2  # one per component + slope guides
    # the plotted W1 remainders fall with slope ~1 on log-log axes, the others with slope ~2
    x, y = lines[0].get_xdata(), lines[0].get_ydata()
    assert abs(np.polyfit(np.log(x[-4:]), np.log(y[-4:]), 1)[0] - 1) < 0.15
    x, y = lines[2].get_xdata(), lines[2].get_ydata()
    assert abs(np.polyfit(np.log(x[-4:]), np.log(y[-4:]), 1)[0] - 2) < 0.15
    ax.figure.savefig(tmp_path / "taylor.png")
    assert (tmp_path / "taylor.png").stat().st_size > 0
    assert "taylor_test" in dk.__all__ and dk.TaylorReport is type(t)


@pytest.mark.parametrize("kw,err", [({"h0": 0}, "h0"), ({"h0": 2.0}, "h0"), ({"n_steps": 2}, "n_steps"),
                                    ({"n_directions": 0}, "n_directions")])
def test_bad_arguments(kw, err):
    net, X, Y = make_case([2, 3, 1], "tanh")
    theta = net.theta.copy()
    with pytest.raises(ValueError, match=err):
        dk.taylor_test(net, X, Y, **kw)
    assert np.array_equal(net.theta, theta)
    with pytest.raises(TypeError, match="Network or a callable"):
        dk.taylor_test("net", X, Y)


def test_leaves_the_network_unchanged():
    net, X, Y = make_case([2, 3, 1], "relu")
    theta, grad = net.theta.copy(), net.grad_vector.copy()
    dk.taylor_test(net, X, Y)
    assert np.array_equal(net.theta, theta) and np.array_equal(net.grad_vector, grad)
