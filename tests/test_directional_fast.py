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


# ----------------------------------------------------------------------------- the native direction draws

def _big_case():
    dims, m = [600, 200, 3, 1], 5  # W1 has 120,000 entries: 15 blocks of the draw
    rng = np.random.default_rng(11)
    net = dk.Network(dims, hidden="tanh", output="sigmoid").initialize("xavier", rng=1)
    X = rng.standard_normal((dims[0], m))
    Y = (rng.random((1, m)) < 0.5).astype(float)
    return net, X, Y


def _normal_cdf(z):
    from math import erf, sqrt
    return 0.5 * (1.0 + np.vectorize(erf)(z / sqrt(2.0)))


def test_directions_are_unit_gaussian_directions_per_component():
    """Each component's direction is a normalized vector of independent standard normals: scaled by sqrt(n) its
    entries pass a Kolmogorov-Smirnov test against N(0, 1) (1 % level), their tail beyond the ziggurat's base
    r = 3.44 and the fraction beyond 1 match the normal's; norm 1 per component; the report's g . d is the
    dot product with the gradient (computed here with NumPy)."""
    net, X, Y = _big_case()
    prob = _problem(net, X, Y, {})
    r = 2
    a, k, J0, gd, V, g = _core.gradcheck_directional(prob, 1e-7, r, 2024, None)
    from dnnkit._params import layer_slices
    comps = list(layer_slices(list(net.layer_dims)).values())
    assert V.shape == (r, net.n_params)
    for c, (sl, _) in enumerate(comps):
        for t in range(r):
            v = V[t, sl]
            assert abs(np.linalg.norm(v) - 1.0) < 1e-14
            assert abs(gd[c * r + t] - float(np.dot(v, g[sl]))) <= 1e-13 * np.linalg.norm(g[sl]) + 1e-300
    w = V[0, comps[0][0]]
    n = w.size
    z = np.sort(w * np.sqrt(n))
    # Kolmogorov-Smirnov distance to N(0, 1), averaged over 8 seeds: under the null its mean is ~0.87 / sqrt(n)
    # (less with the scale estimated by the normalization) with a standard deviation ~0.26 / sqrt(n) per seed;
    # 1.24 / sqrt(n) is 4 standard deviations of the mean above
    dists = []
    for seed in range(8):
        v = np.sort(_core.gradcheck_directional(prob, 1e-7, 1, seed, None)[4][0, comps[0][0]] * np.sqrt(n))
        cdf = _normal_cdf(v)
        dists.append(np.max(np.maximum(np.arange(1, n + 1) / n - cdf, cdf - np.arange(n) / n)))
    assert np.mean(dists) < 1.24 / np.sqrt(n), dists
    for c_, p in ((1.0, 0.31731050786291415), (3.442619855899, 5.761085123916405e-4)):
        frac = np.mean(np.abs(z) > c_)
        assert abs(frac - p) < 5 * np.sqrt(p * (1 - p) / n), (c_, frac, p)
    # the two rows (directions t = 0, 1) and two blocks of one row are uncorrelated
    assert abs(np.corrcoef(V[0, comps[0][0]], V[1, comps[0][0]])[0, 1]) < 5 / np.sqrt(n)
    assert abs(np.corrcoef(w[:8192], w[8192:16384])[0, 1]) < 5 / np.sqrt(8192)


def test_directions_reproducible_by_rng_and_independent_of_threads():
    net, X, Y = _big_case()
    old = dk.get_num_threads()
    runs = []
    try:
        for nt in (1, 2, 7):
            dk.set_num_threads(nt)
            runs.append(_core.gradcheck_directional(_problem(net, X, Y, {}), 1e-7, 3, 99, None))
    finally:
        dk.set_num_threads(old)
    for other in runs[1:]:
        for x, y in zip(runs[0], other):
            np.testing.assert_array_equal(x, y)
    other_seed = _core.gradcheck_directional(_problem(net, X, Y, {}), 1e-7, 3, 100, None)
    assert not np.array_equal(other_seed[4], runs[0][4])
    # the public call: the same rng, the same report; a Generator is consumed like any other draw
    r1 = dk.gradcheck(net, X, Y, mode="directional", n_directions=2, rng=5)
    r2 = dk.gradcheck(net, X, Y, mode="directional", n_directions=2, rng=np.random.default_rng(5))
    np.testing.assert_array_equal(r1.approx, r2.approx)
    np.testing.assert_array_equal(r1.grad, r2.grad)
    r3 = dk.gradcheck(net, X, Y, mode="directional", n_directions=2, rng=6)
    assert not np.array_equal(r1.grad, r3.grad)


def test_one_call_equals_the_dense_directions_and_the_reference_loop():
    """The differences of the one-call path equal those of the same directions passed densely to the engine
    (gradcheck_directions, tested against the reference loop in test_gradcheck.py) bit for bit, and the NumPy
    reference loop along one of them."""
    from dnnkit import reference as ref
    from dnnkit._params import layer_slices, vector_to_params
    dims, m = [6, 8, 7, 3], 12
    rng = np.random.default_rng(31)
    net = dk.Network(dims, hidden="sigmoid", output="softmax").initialize("xavier", rng=3)
    X = rng.standard_normal((6, m))
    Y = np.eye(3)[:, rng.integers(0, 3, m)]
    kw = {"l2": 0.3, "keep_prob": 0.8, "seed": 7}
    prob = _problem(net, X, Y, kw)
    r = 2
    a, k, J0, gd, V, g = _core.gradcheck_directional(prob, 1e-6, r, 17, None)
    dense = []
    for sl, _ in layer_slices(dims).values():
        for t in range(r):
            d = np.zeros(net.n_params)
            d[sl] = V[t, sl]
            dense.append(d)
    b, kb, _ = _core.gradcheck_directions(_problem(net, X, Y, kw), 1e-6, np.array(dense))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(k, kb)
    masks = [None] + [dk.dropout_mask((dims[l], m), 0.8, 7, 0, l) for l in (1, 2)]
    theta = net.theta.copy()
    d = dense[0]

    def J(t):
        q = vector_to_params(theta + t[0] * d, dims)
        AL, c = ref.forward_propagation(X, q, "sigmoid", "softmax", keep_prob=[1.0, 0.8, 0.8], masks=masks)
        return ref.compute_cost(AL, Y, q, "ce", 0.3, 0.0, ZL=c["Z3"])
    _, a_ref = ref.gradient_check(J, np.zeros(1), np.zeros(1), 1e-6)
    np.testing.assert_allclose(a[0], a_ref[0], rtol=1e-6, atol=1e-10)


def test_directional_bad_arguments():
    net, X, Y = _case([5, 6, 4, 3], "relu", "softmax", "ce", 9, 0)
    prob = _problem(net, X, Y, {})
    with pytest.raises(ValueError, match="n_directions"):
        _core.gradcheck_directional(prob, 1e-7, 0, 1, None)
    with pytest.raises(ValueError, match="grads"):
        _core.gradcheck_directional(prob, 1e-7, 1, 1, np.zeros(3))
    with pytest.raises(ValueError, match="eps"):
        _core.gradcheck_directional(prob, -1.0, 1, 1, None)
    with pytest.raises(ValueError, match="n_directions"):
        dk.gradcheck(net, X, Y, mode="directional", n_directions=0)


def test_ctrl_c_during_a_directional_check():
    """A real SIGINT (interrupt_main from a timer, with Python's handler installed) during a long directional check
    (many directions: ~seconds of native work) stops the native call: KeyboardInterrupt, the net unchanged.
    Bounded: the work is finite and the timer fires once."""
    import threading
    import _thread
    import time

    from _signals import python_sigint
    rng = np.random.default_rng(5)
    dims, m = [16, 192, 192, 4], 384
    net = dk.Network(dims, hidden="tanh", output="softmax").initialize("xavier", rng=2)
    X = rng.standard_normal((16, m))
    Y = np.eye(4)[:, rng.integers(0, 4, m)]
    theta = net.theta.copy()
    t = threading.Timer(0.3, _thread.interrupt_main)
    with python_sigint():
        t0 = time.perf_counter()
        t.start()
        try:
            with pytest.raises(KeyboardInterrupt):
                dk.gradcheck(net, X, Y, mode="directional", n_directions=300)
        finally:
            t.cancel()
            t.join()
    np.testing.assert_array_equal(net.theta, theta)
    assert time.perf_counter() - t0 < 60  # bounded (a liveness bound, not a speed claim)
