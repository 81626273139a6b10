"""Directional mode's one-pass engine call (issue 9: the directional mode >= 2x torch fast_mode): the engine's
cached pass computes the network's own gradient (gradcheck_component_directions(..., with_grad=True)), so
dk.gradcheck(net, X, Y, mode="directional") runs the forward pass once. Oracles: Network.backward (the separate
pass the check used before) and the same check given that gradient explicitly (grads=)."""
import numpy as np
import pytest

import dnnkit as dk
from dnnkit import _core

CASES = [  # (dims, hidden, output, loss, m, kw)
    ([7, 9, 6, 3], "relu", "softmax", "ce", 23, {}),
    ([7, 9, 6, 3], "tanh", "softmax", "ce", 23, {"l2": 0.7}),
    ([7, 9, 6, 1], "sigmoid", "sigmoid", "bce", 19, {"keep_prob": 0.8, "seed": 4}),
    ([5, 8, 2], "leaky_relu", "linear", "mse", 17, {"l1": 0.3, "l2": 0.1}),
    ([5, 8, 8, 2], "linear", "sigmoid", "mse", 11, {"keep_prob": [0.9, 0.7, 0.8], "seed": 2}),
    ([5, 6, 4, 3], "tanh", "softmax", "ce", 9, {"keep_prob": [1.0, 0.5, 0.8], "seed": 1, "step": 3}),
    # past the lean/wide threshold of the passes (the wide, OpenMP path)
    ([40, 64, 32, 4], "sigmoid", "softmax", "ce", 300, {"keep_prob": 0.9, "seed": 8}),
    ([40, 64, 32, 4], "tanh", "softmax", "ce", 300, {}),
]


def _case(dims, hidden, output, loss, m, seed):
    rng = np.random.default_rng(seed)
    net = dk.Network(dims, hidden=hidden, output=output, loss=loss).initialize("xavier", rng=seed)
    X = rng.standard_normal((dims[0], m))
    if loss == "ce":
        Y = np.eye(dims[-1])[:, rng.integers(0, dims[-1], m)]
    elif loss == "bce":
        Y = (rng.random((dims[-1], m)) < 0.5).astype(float)
    else:
        Y = rng.uniform(0.0, 1.0, (dims[-1], m))
    return net, X, Y


def _problem(net, X, Y, kw):
    from dnnkit import _validation as V
    keep = V.normalize_keep_prob(kw.get("keep_prob", 1.0), net.L)  # as dk.gradcheck and Network.backward read it
    return _core.GradcheckProblem(list(net.layer_dims), net.hidden, net.output, net.loss, float(net.alpha),
                                  net.theta.copy(), X, Y, keep, kw.get("seed", 0), kw.get("step", 0), [],
                                  kw.get("l2", 0.0), kw.get("l1", 0.0))


@pytest.mark.parametrize("case", range(len(CASES)))
def test_engine_gradient_is_network_backward_bit_for_bit(case):
    dims, hidden, output, loss, m, kw = CASES[case]
    net, X, Y = _case(dims, hidden, output, loss, m, case)
    prob = _problem(net, X, Y, kw)
    twin = dk.Network(dims, hidden=hidden, output=output, loss=loss, dtype="float64")
    twin.theta = net.theta.copy()
    twin.backward(X, Y, **kw)
    want = twin.grad_vector.copy()
    V = np.random.default_rng(case).standard_normal((2, net.n_params))
    a, k, J0, g = _core.gradcheck_component_directions(prob, 1e-7, V, with_grad=True)
    np.testing.assert_array_equal(g, want)
    assert J0 == twin.last_cost
    # the same directional numbers as without the gradient (a fresh problem: forward-only cached pass)
    a2, k2, J02 = _core.gradcheck_component_directions(_problem(net, X, Y, kw), 1e-7, V)
    np.testing.assert_array_equal(a, a2)
    np.testing.assert_array_equal(k, k2)
    assert J0 == J02
    # a later call on the same (cached) problem computes the gradient by a separate backward: the same bits
    a3, _, _, g3 = _core.gradcheck_component_directions(prob, 1e-7, V, with_grad=True)
    np.testing.assert_array_equal(g3, want)
    np.testing.assert_array_equal(a3, a)


@pytest.mark.parametrize("case", range(len(CASES)))
def test_report_equals_the_check_of_the_explicit_backward_gradient(case):
    """mode='directional' on the network's own gradient (computed inside the engine call) gives the report the
    same check gives for Network.backward's gradient passed as grads=: every number bit for bit."""
    dims, hidden, output, loss, m, kw = CASES[case]
    net, X, Y = _case(dims, hidden, output, loss, m, case)
    twin = dk.Network(dims, hidden=hidden, output=output, loss=loss, dtype="float64")
    twin.theta = net.theta.copy()
    grads = {k: v.copy() for k, v in twin.backward(X, Y, **kw).items()}
    r = dk.gradcheck(net, X, Y, mode="directional", n_directions=3, rng=case, **kw)
    e = dk.gradcheck(net, X, Y, grads=grads, mode="directional", n_directions=3, rng=case, **kw)
    for name in ("approx", "grad", "flags", "kink_approx"):
        np.testing.assert_array_equal(getattr(r, name), getattr(e, name), err_msg=name)
    assert r.cost == e.cost and float(r) == float(e)
    assert r.verdict == e.verdict
    assert r.verdict in ("correct", "unverified")  # the network's own gradient
    assert [c.verdict for c in r.components] == [c.verdict for c in e.components]


def test_one_pass_directional_identical_for_1_2_7_threads():
    dims, hidden, output, loss, m, kw = CASES[6]
    net, X, Y = _case(dims, hidden, output, loss, m, 6)
    old = dk.get_num_threads()
    out = []
    try:
        for nt in (1, 2, 7):
            dk.set_num_threads(nt)
            r = dk.gradcheck(net, X, Y, mode="directional", n_directions=2, rng=3, **kw)
            out.append((r.approx.copy(), r.grad.copy(), r.flags.copy(), r.cost))
    finally:
        dk.set_num_threads(old)
    for o in out[1:]:
        for x, y in zip(out[0][:3], o[:3]):
            np.testing.assert_array_equal(x, y)
        assert o[3] == out[0][3]


def test_check_leaves_the_users_network_unchanged():
    net, X, Y = _case([7, 9, 6, 3], "tanh", "softmax", "ce", 23, 0)
    theta = net.theta.copy()
    grad = net.grad_vector.copy()
    dk.gradcheck(net, X, Y, mode="directional")
    np.testing.assert_array_equal(net.theta, theta)
    np.testing.assert_array_equal(net.grad_vector, grad)
