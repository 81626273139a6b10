"""dk.diagnose.propagation(net, X) on the user's own Network, and dk.diagnose.gradient_norms(history) on the
per-layer gradient norms fit records. Oracles: closed forms (W = c I, linear layers) and NumPy written here."""
import math

import numpy as np
import pytest

import dnnkit as dk


def identity_net(c, L=8, n=4):
    net = dk.Network([n] * (L + 1), hidden="linear", output="linear", loss="mse")
    net.set_params({**{f"W{l}": c * np.eye(n) for l in range(1, L + 1)},
                    **{f"b{l}": np.zeros((n, 1)) for l in range(1, L + 1)}})
    return net


@pytest.mark.parametrize("c,verdict", [(1.5, "exploding"), (0.5, "vanishing"), (1.0, "stable")])
def test_net_with_W_cI_gives_the_closed_forms(c, verdict):
    net = identity_net(c)
    X = np.random.default_rng(0).standard_normal((4, 300))
    r = dk.diagnose.propagation(net, X)
    assert math.isclose(r.ratio, c ** 7, rel_tol=1e-12) and math.isclose(r.output_ratio, c ** 8, rel_tol=1e-12)
    assert math.isclose(r.gradient_ratio, c ** 8, rel_tol=1e-12)
    assert r.verdict == verdict and r.init == "the network's parameters" and r.layer_dims == [4] * 9
    # the same numbers as the synthetic form with the same weights and input
    s = dk.diagnose.propagation([4] * 9, weights=c, x=X, activation="linear")
    np.testing.assert_allclose(r.activation_scale, s.activation_scale, rtol=1e-12)


def test_net_uses_its_biases_activations_and_data():
    rng = np.random.default_rng(1)
    net = dk.Network([3, 6, 5, 2], hidden="tanh", output="sigmoid", loss="bce")
    net.initialize(rng=2)
    net.params["b1"][...] = 0.7
    X = rng.standard_normal((3, 50))
    theta = net.theta.copy()
    r = dk.diagnose.propagation(net, X, seed=5)
    assert np.array_equal(net.theta, theta)
    # NumPy, written here: forward with biases, unit +-1 upstream gradient drawn as the report documents
    p = net.get_params()
    A0 = X
    Z1 = p["W1"] @ A0 + p["b1"]; A1 = np.tanh(Z1)
    Z2 = p["W2"] @ A1 + p["b2"]; A2 = np.tanh(Z2)
    Z3 = p["W3"] @ A2 + p["b3"]; A3 = 1 / (1 + np.exp(-Z3))
    rms = lambda a: float(np.sqrt(np.mean(a ** 2)))  # noqa: E731
    np.testing.assert_allclose(r.activation_scale, [rms(A0), rms(A1), rms(A2), rms(A3)], rtol=1e-12)
    dA3 = np.where(np.random.default_rng(5).random((2, 50)) < 0.5, -1.0, 1.0)
    dZ3 = dA3 * A3 * (1 - A3)
    dA2 = p["W3"].T @ dZ3
    dZ2 = dA2 * (1 - A2 ** 2)
    dA1 = p["W2"].T @ dZ2
    dZ1 = dA1 * (1 - A1 ** 2)
    np.testing.assert_allclose(r.dA_scale, [rms(p["W1"].T @ dZ1), rms(dA1), rms(dA2), 1.0], rtol=1e-12)
    np.testing.assert_allclose(r.gradient_scale, [rms(dZ1 @ A0.T / 50), rms(dZ2 @ A1.T / 50), rms(dZ3 @ A2.T / 50)],
                               rtol=1e-12)
    assert "tanh (output sigmoid)" in str(r)


def test_deep_small_init_net_vanishes_he_relu_net_is_stable():
    X = np.random.default_rng(0).standard_normal((20, 400))
    net = dk.Network([20] + [50] * 10 + [1], hidden="tanh")
    net.initialize("random", rng=0, scale=0.01)
    assert dk.diagnose.propagation(net, X).verdict == "vanishing"
    net = dk.Network([20] + [50] * 10 + [50], hidden="relu", output="linear", loss="mse")
    net.initialize("he", rng=0)
    assert dk.diagnose.propagation(net, X).verdict == "stable"


def test_bad_input_names_the_argument():
    net = identity_net(1.0)
    with pytest.raises(ValueError, match="X"):
        dk.diagnose.propagation(net, np.zeros((3, 5)))
    with pytest.raises(TypeError, match="X"):
        dk.diagnose.propagation(net)


# ----------------------------------------------------------------------------- gradient norms from fit

def test_history_shows_where_gradients_vanish():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((5, 200))
    Y = (X[:1] * X[1:2] > 0).astype(float)
    net = dk.Network([5] + [30] * 6 + [1], hidden="sigmoid")
    net.initialize("random", rng=0, scale=0.3)
    h = net.fit(X, Y, epochs=5, learning_rate=0.5, seed=0)
    assert len(h.grad_norms) == 5 and all(len(g) == 7 for g in h.grad_norms)
    r = dk.diagnose.gradient_norms(h)
    assert r.verdict == "vanishing" and 1 in r.vanishing_layers and 7 not in r.vanishing_layers
    G = np.asarray(h.grad_norms)
    assert math.isclose(r.ratio, min(G[:, 0] / G[:, -1]))
    assert "vanishing" in str(r) and r.to_dict()["verdict"] == "vanishing"


def test_history_stable_and_exploding():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((4, 100))
    Y = (X[:1] > 0).astype(float)
    net = dk.Network([4, 8, 1], hidden="relu")
    net.initialize(rng=0)
    assert dk.diagnose.gradient_norms(net.fit(X, Y, epochs=5, learning_rate=0.1, seed=0)).verdict == "stable"
    fake = {"epoch": [1, 2, 3], "grad_norms": [[1.0, 1.0, 1.0], [50.0, 10.0, 1.0], [1e4, 100.0, 1.0]]}
    r = dk.diagnose.gradient_norms(fake)
    assert r.verdict == "exploding" and r.exploding_layers == [1, 2] and r.worst_epoch == 3
    with pytest.raises(ValueError, match="grad_norms"):
        dk.diagnose.gradient_norms({"grad_norms": []})
