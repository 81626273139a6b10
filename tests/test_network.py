"""Native core vs the NumPy reference (the oracle), thread independence, dropout RNG, validation."""
import numpy as np
import pytest

import dnnkit as dk
from dnnkit import reference as R

PAIRS = [("sigmoid", "bce"), ("softmax", "ce"), ("linear", "mse"), ("sigmoid", "mse")]
HIDDEN = ["relu", "leaky_relu", "tanh", "sigmoid", "linear"]
TOL = {"float64": dict(rtol=1e-10, atol=1e-12), "float32": dict(rtol=2e-4, atol=2e-5)}


def make_data(dims, m, output, loss, seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((dims[0], m))
    if loss == "ce":
        Y = np.eye(dims[-1])[:, rng.integers(0, dims[-1], m)]
    elif loss == "bce":
        Y = (rng.random((dims[-1], m)) > 0.5).astype(float)
    elif output == "sigmoid":
        Y = rng.random((dims[-1], m))
    else:
        Y = rng.standard_normal((dims[-1], m))
    return X, Y


def random_arch(seed):
    rng = np.random.default_rng(seed)
    depth = int(rng.integers(1, 6))  # 1..5 weight layers
    widths = [int(w) for w in rng.choice([1, 2, 3, 7, 16, 33], size=depth + 1)]
    m = int(rng.choice([1, 2, 5, 67, 130]))
    return widths, m


def masks_for(dims, m, keep, seed):
    """Explicit 0/1 masks for the hidden layers (and the input when keep has L entries)."""
    rng = np.random.default_rng(seed)
    L = len(dims) - 1
    kp = dk._validation.normalize_keep_prob(keep, L)
    return [None if kp[l] >= 1 else (rng.random((dims[l], m)) < kp[l]).astype(float) for l in range(L)], kp


CASES = [(s, h, o, lo) for s in range(6) for h in HIDDEN for (o, lo) in PAIRS]


@pytest.mark.parametrize("seed,hidden,output,loss", CASES,
                         ids=[f"s{s}-{h}-{o}-{lo}" for s, h, o, lo in CASES])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_native_matches_reference(seed, hidden, output, loss, dtype):
    dims, m = random_arch(seed)
    if output == "softmax" and dims[-1] == 1:
        dims[-1] = 3
    X, Y = make_data(dims, m, output, loss, seed)
    net = dk.Network(dims, hidden=hidden, output=output, loss=loss, dtype=dtype)
    net.initialize("glorot", rng=seed)
    params = {k: v.astype(np.float64) for k, v in net.params.items()}
    l2, l1 = [(0.0, 0.0), (0.7, 0.0), (0.3, 0.2)][seed % 3]
    L = len(dims) - 1
    keep = None
    masks = None
    if seed % 2 == 1 and L > 1:
        keep = [0.8] * (L - 1) if seed % 4 == 1 else [0.9] + [0.7] * (L - 1)
        masks, kp = masks_for(dims, m, keep, seed)
    AL_ref, caches = R.forward_propagation(X, params, hidden, output, keep_prob=keep if keep else 1.0,
                                           masks=masks)
    J_ref = R.compute_cost(AL_ref, Y, params, loss, l2=l2, l1=l1, ZL=caches[f"Z{L}"])
    g_ref = R.backward_propagation(X, Y, caches, params, hidden, output, loss, l2=l2, l1=l1,
                                   keep_prob=keep if keep else 1.0)

    kw = dict(keep_prob=keep if keep else 1.0, masks=masks)
    AL, cache = net.forward(X, **kw)
    grads = net.backward(X, Y, l2=l2, l1=l1, **kw)
    tol = TOL[dtype]
    np.testing.assert_allclose(AL, AL_ref, **tol)
    for l in range(1, L + 1):
        np.testing.assert_allclose(cache[f"Z{l}"], caches[f"Z{l}"], **tol)
    np.testing.assert_allclose(net.last_cost, J_ref, rtol=tol["rtol"])
    np.testing.assert_allclose(net.cost(X, Y, l2=l2, l1=l1, **kw), J_ref, rtol=tol["rtol"])
    scale = max(np.abs(g_ref[k]).max() for k in g_ref)
    for k in g_ref:
        np.testing.assert_allclose(grads[k], g_ref[k], rtol=tol["rtol"], atol=tol["atol"] * scale + 1e-300)


def test_flat_buffers_are_views():
    net = dk.Network([3, 4, 2], output="softmax")
    net.initialize("he", rng=0)
    assert net.params["W1"].base is net.theta or np.shares_memory(net.params["W1"], net.theta)
    net.params["b2"][1, 0] = 5.0
    assert net.theta[-1] == 5.0
    X, Y = make_data([3, 4, 2], 9, "softmax", "ce", 0)
    g = net.backward(X, Y)
    assert np.shares_memory(g["dW2"], net.grad_vector)
    np.testing.assert_array_equal(dk.params_to_vector(g, prefix="d"), net.grad_vector)
    np.testing.assert_array_equal(dk.params_to_vector(net.params), net.theta)


def test_course_he_init_value():
    p = dk.initialize_parameters([2, 4, 1], "he", rng=np.random.RandomState(3))
    np.testing.assert_allclose(p["W1"][0], [1.78862847, 0.43650985], rtol=0, atol=5e-9)


def test_stable_bce_never_overflows():
    net = dk.Network([1, 1], output="sigmoid")
    net.set_params({"W1": np.array([[1000.0]]), "b1": np.zeros((1, 1))})
    X = np.array([[1.0, -1.0]])
    Y = np.array([[0.0, 1.0]])  # confidently wrong on both: loss = 1000 each, exactly in logit form
    assert net.cost(X, Y) == pytest.approx(1000.0, rel=1e-12)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("threads", [2, 7])
def test_bit_identical_across_threads(threads, dtype):
    dims = [50, 300, 200, 5]
    X, Y = make_data(dims, 700, "softmax", "ce", 3)
    net = dk.Network(dims, output="softmax", dtype=dtype)
    net.initialize("he", rng=1)
    try:
        dk.set_num_threads(1)
        AL1, _ = net.forward(X, keep_prob=0.8, seed=5)
        net.backward(X, Y, l2=0.1, keep_prob=[0.9, 0.8, 0.7], seed=5, step=3)
        g1, J1 = net.grad_vector.copy(), net.last_cost
        dk.set_num_threads(threads)
        AL2, _ = net.forward(X, keep_prob=0.8, seed=5)
        net.backward(X, Y, l2=0.1, keep_prob=[0.9, 0.8, 0.7], seed=5, step=3)
    finally:
        dk.set_num_threads(0)
    assert np.array_equal(AL1, AL2)
    assert np.array_equal(g1, net.grad_vector)
    assert J1 == net.last_cost


def test_seeded_dropout_equals_explicit_masks():
    dims = [4, 30, 20, 1]
    X, Y = make_data(dims, 101, "sigmoid", "bce", 1)
    net = dk.Network(dims)
    net.initialize("he", rng=2)
    net.backward(X, Y, keep_prob=[0.7, 0.6], seed=11, step=4)
    g_seed = net.grad_vector.copy()
    masks = [dk.dropout_mask((dims[l], 101), kp, seed=11, step=4, layer=l) for l, kp in ((1, 0.7), (2, 0.6))]
    net.backward(X, Y, keep_prob=[0.7, 0.6], masks=masks)
    np.testing.assert_allclose(net.grad_vector, g_seed, rtol=1e-14, atol=1e-16)
    _, cache = net.forward(X, keep_prob=[0.7, 0.6], seed=11, step=4)
    np.testing.assert_array_equal(cache["D1"], masks[0])


def test_dropout_mask_statistics():
    kp = 0.86
    D = dk.dropout_mask((400, 5000), kp, seed=1, step=0, layer=1)
    assert set(np.unique(D)) <= {0.0, 1.0}
    # mean within 5 standard errors of keep_prob
    se = np.sqrt(kp * (1 - kp) / D.size)
    assert abs(D.mean() - kp) < 5 * se
    # per-unit and per-example rates spread like binomials (no stuck rows/columns)
    assert abs(D.mean(axis=1).std() - np.sqrt(kp * (1 - kp) / 5000)) < 0.2 * np.sqrt(kp * (1 - kp) / 5000)
    # independence across layers, steps and seeds: correlation ~ 0 and agreement ~ kp^2 + (1-kp)^2
    others = [dk.dropout_mask((400, 5000), kp, seed=1, step=0, layer=2),
              dk.dropout_mask((400, 5000), kp, seed=1, step=1, layer=1),
              dk.dropout_mask((400, 5000), kp, seed=2, step=0, layer=1)]
    for E in others:
        r = np.corrcoef(D.ravel(), E.ravel())[0, 1]
        assert abs(r) < 5 / np.sqrt(D.size)
    # adjacent examples (same Philox block) are independent too
    r = np.corrcoef(D[:, 0::2].ravel(), D[:, 1::2].ravel())[0, 1]
    assert abs(r) < 5 / np.sqrt(D.size / 2)


def test_dropout_reproducible_and_sliced_consistently():
    A = dk.dropout_mask((7, 50), 0.5, seed=3, step=2, layer=1)
    B = dk.dropout_mask((7, 50), 0.5, seed=3, step=2, layer=1)
    np.testing.assert_array_equal(A, B)
    # the mask of unit i, example j does not depend on m (counter-based)
    C = dk.dropout_mask((7, 13), 0.5, seed=3, step=2, layer=1)
    np.testing.assert_array_equal(A[:, :13], C)
    assert dk.dropout_mask((3, 10), 1.0, seed=0).all()


def test_dropout_seedless_draws_fresh_masks():
    net = dk.Network([3, 50, 1])
    net.initialize("he", rng=0)
    X = np.ones((3, 40))
    a, c1 = net.forward(X, keep_prob=0.5)
    b, c2 = net.forward(X, keep_prob=0.5)
    assert c1["seed"] != c2["seed"] and not np.array_equal(c1["D1"], c2["D1"])
    # the recorded seed reproduces the pass
    a2, _ = net.forward(X, keep_prob=0.5, seed=c1["seed"])
    np.testing.assert_array_equal(a, a2)


def test_predict_and_evaluate():
    X, Y = make_data([2, 3, 3], 20, "softmax", "ce", 0)
    net = dk.Network([2, 3, 3], output="softmax")
    net.initialize("he", rng=0)
    P = net.predict(X)
    AL, _ = net.forward(X)
    np.testing.assert_array_equal(P, AL.argmax(axis=0))
    ev = net.evaluate(X, Y)
    assert ev["error"] == pytest.approx(np.mean(P != Y.argmax(axis=0)))
    netb = dk.Network([2, 1], output="sigmoid")
    netb.initialize("he", rng=0)
    assert netb.predict(X).shape == (1, 20)


# ---------------------------------------------------------------- validation: one test per rule
def _net():
    n = dk.Network([2, 3, 1])
    n.initialize("he", rng=0)
    return n


X0 = np.zeros((2, 4))
Y0 = np.array([[0.0, 1.0, 1.0, 0.0]])

BAD_CALLS = {
    "x-wrong-rows": (lambda n: n.forward(np.zeros((3, 4))), ValueError),
    "x-1d": (lambda n: n.forward(np.zeros(2)), ValueError),
    "x-empty": (lambda n: n.forward(np.zeros((2, 0))), ValueError),
    "x-nan": (lambda n: n.forward(np.array([[np.nan, 0], [0, 0]])), ValueError),
    "x-inf": (lambda n: n.forward(np.array([[np.inf, 0], [0, 0]])), ValueError),
    "x-string": (lambda n: n.forward(np.array([["a", "b"], ["c", "d"]])), TypeError),
    "x-object": (lambda n: n.forward(np.array([[1, None], [0, 0]], dtype=object)), TypeError),
    "x-complex": (lambda n: n.forward(np.zeros((2, 2), dtype=complex)), TypeError),
    "y-wrong-cols": (lambda n: n.backward(X0, np.zeros((1, 3))), ValueError),
    "y-wrong-rows": (lambda n: n.backward(X0, np.zeros((2, 4))), ValueError),
    "y-nan": (lambda n: n.backward(X0, np.array([[0, np.nan, 1, 0]])), ValueError),
    "bce-label-out-of-range": (lambda n: n.backward(X0, np.array([[0, 2.0, 1, 0]])), ValueError),
    "bce-label-negative": (lambda n: n.cost(X0, np.array([[0, -1.0, 1, 0]])), ValueError),
    "keep-prob-zero": (lambda n: n.forward(X0, keep_prob=0.0, seed=1), ValueError),
    "keep-prob-above-one": (lambda n: n.forward(X0, keep_prob=1.5, seed=1), ValueError),
    "keep-prob-nan": (lambda n: n.forward(X0, keep_prob=float("nan"), seed=1), ValueError),
    "keep-prob-wrong-length": (lambda n: n.forward(X0, keep_prob=[0.5, 0.5, 0.5], seed=1), ValueError),
    "keep-prob-string": (lambda n: n.forward(X0, keep_prob="0.5", seed=1), TypeError),
    "l2-negative": (lambda n: n.backward(X0, Y0, l2=-0.1), ValueError),
    "l1-negative": (lambda n: n.backward(X0, Y0, l1=-1), ValueError),
    "l2-inf": (lambda n: n.cost(X0, Y0, l2=float("inf")), ValueError),
    "seed-negative": (lambda n: n.forward(X0, keep_prob=0.5, seed=-1), ValueError),
    "step-beyond-32-bits": (lambda n: n.backward(X0, Y0, keep_prob=0.5, seed=1, step=2**32), ValueError),
    "mask-wrong-shape": (lambda n: n.forward(X0, keep_prob=0.5, masks=[np.ones((3, 5))]), ValueError),
    "mask-not-binary": (lambda n: n.forward(X0, keep_prob=0.5, masks=[np.full((3, 4), 0.5)]), ValueError),
    "mask-drops-without-dropout": (lambda n: n.forward(X0, masks=[np.eye(3, 4)]), ValueError),
    "params-extra-key": (lambda n: n.set_params({**n.get_params(), "W9": np.zeros((3, 2))}), KeyError),
    "theta-wrong-size": (lambda n: setattr(n, "theta", np.zeros(3)), ValueError),
    "params-missing-key": (lambda n: n.set_params({"W1": np.zeros((3, 2))}), KeyError),
    "params-wrong-shape": (lambda n: n.set_params({"W1": np.zeros((2, 3)), "b1": np.zeros((3, 1)),
                                                   "W2": np.zeros((1, 3)), "b2": np.zeros((1, 1))}), ValueError),
    "params-nan": (lambda n: n.set_params({"W1": np.full((3, 2), np.nan), "b1": np.zeros((3, 1)),
                                          "W2": np.zeros((1, 3)), "b2": np.zeros((1, 1))}), ValueError),
}


@pytest.mark.parametrize("name", list(BAD_CALLS), ids=list(BAD_CALLS))
def test_bad_input_raises_and_changes_nothing(name):
    fn, exc = BAD_CALLS[name]
    net = _net()
    theta0, grad0 = net.theta.copy(), net.grad_vector.copy()
    with pytest.raises(exc):
        fn(net)
    np.testing.assert_array_equal(net.theta, theta0)
    np.testing.assert_array_equal(net.grad_vector, grad0)


BAD_CTORS = {
    "unknown-hidden": (dict(layer_dims=[2, 1], hidden="swish"), ValueError),
    "unknown-output": (dict(layer_dims=[2, 1], output="relu"), ValueError),
    "unknown-loss": (dict(layer_dims=[2, 1], loss="hinge"), ValueError),
    "ce-with-sigmoid": (dict(layer_dims=[2, 1], output="sigmoid", loss="ce"), ValueError),
    "bce-with-linear": (dict(layer_dims=[2, 1], output="linear", loss="bce"), ValueError),
    "one-layer-dims": (dict(layer_dims=[2]), ValueError),
    "zero-width": (dict(layer_dims=[2, 0, 1]), ValueError),
    "float-width": (dict(layer_dims=[2, 2.5, 1]), TypeError),
    "width-beyond-c-int": (dict(layer_dims=[2, 2**31, 1]), ValueError),
    "bad-dtype": (dict(layer_dims=[2, 1], dtype="int32"), TypeError),
    "negative-alpha": (dict(layer_dims=[2, 1], alpha=-0.1), ValueError),
}


@pytest.mark.parametrize("name", list(BAD_CTORS), ids=list(BAD_CTORS))
def test_bad_network_arguments(name):
    kw, exc = BAD_CTORS[name]
    with pytest.raises(exc):
        dk.Network(**kw)


def test_unknown_init_method():
    with pytest.raises(ValueError, match="he"):
        _net().initialize("kaiming_magic")


def test_set_num_threads_rejects_negative():
    with pytest.raises(ValueError):
        dk.set_num_threads(-2)


def test_set_num_threads_rejects_absurd_counts():
    n0 = dk.get_num_threads()
    # the message names the limit; it is the native core's (one definition, exported as _core.MAX_THREADS:
    # max(1024, 4 x the cores)), no longer a second Python value of 4096
    with pytest.raises(ValueError, match=rf"\[0, {dk._core.MAX_THREADS}\]"):
        dk.set_num_threads(10**12)  # was a pybind11 "incompatible function arguments" TypeError
    assert dk.get_num_threads() == n0


@pytest.mark.parametrize("kw, exc", [
    (dict(shape=(3, 4), layer=-1), ValueError),
    (dict(shape=(3, 4), step=2**32), ValueError),
    (dict(shape=(2.5, 4)), TypeError),          # was silently truncated to 2
    (dict(shape=(3, 2**31)), ValueError),
    (dict(shape=(3,)), ValueError),
], ids=["negative-layer", "step-beyond-32-bits", "float-size", "size-beyond-c-int", "one-entry"])
def test_dropout_mask_rejects_bad_arguments(kw, exc):
    kw = dict(dict(keep_prob=0.5, seed=1), **kw)
    with pytest.raises(exc):
        dk.dropout_mask(**kw)


def test_forward_cache_consistent_when_two_threads_share_a_network():
    # forward() is two native calls (the pass, then the cache it left in the shared workspace); another
    # thread's pass in between gave a cache of the other batch (even of another m).
    import threading

    net = dk.Network([6, 16, 1]).initialize("he", rng=0)
    g = np.random.default_rng(0)
    data = [g.standard_normal((6, 40)), g.standard_normal((6, 3))]
    refs = [net.forward(X)[1]["Z1"].copy() for X in data]
    Y = (g.random((1, 40)) > 0.5).astype(float)
    bad = []

    def work(i):
        for _ in range(1000):
            _, cache = net.forward(data[i])
            if cache["Z1"].shape != refs[i].shape or not np.array_equal(cache["Z1"], refs[i]):
                bad.append(i)
                return

    def other():
        for _ in range(1000):
            net.cost(data[0], Y)
            net.predict_proba(data[1])

    import sys

    threads = [threading.Thread(target=work, args=(i,)) for i in (0, 1)] + [threading.Thread(target=other)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads often, so an unguarded gap between the two calls is hit
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    assert bad == []


def test_int_input_is_converted_not_rejected():
    net = _net()
    AL, _ = net.forward(np.ones((2, 3), dtype=np.int32))
    AL2, _ = net.forward(np.ones((2, 3)))
    np.testing.assert_array_equal(AL, AL2)


def test_torch_cross_check():
    torch = pytest.importorskip("torch")
    dims = [5, 8, 6, 3]
    X, Y = make_data(dims, 17, "softmax", "ce", 4)
    net = dk.Network(dims, hidden="tanh", output="softmax")
    net.initialize("glorot", rng=4)
    l2 = 0.3
    grads = net.backward(X, Y, l2=l2)
    t = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in net.params.items()}
    A = torch.tensor(X)
    for l in range(1, 4):
        Z = t[f"W{l}"] @ A + t[f"b{l}"]
        A = torch.tanh(Z) if l < 3 else Z
    m = X.shape[1]
    J = torch.nn.functional.cross_entropy(A.T, torch.tensor(Y.argmax(0)), reduction="mean")
    J = J + l2 / (2 * m) * sum((t[f"W{l}"] ** 2).sum() for l in range(1, 4))
    J.backward()
    assert net.last_cost == pytest.approx(J.item(), rel=1e-12)
    for k, v in t.items():
        np.testing.assert_allclose(grads["d" + k], v.grad.numpy(), rtol=1e-10, atol=1e-14)


def test_pickle_and_copy_are_independent():
    import copy
    import pickle

    net = _net()
    X = np.random.default_rng(0).standard_normal((2, 6))
    for other in (pickle.loads(pickle.dumps(net)), copy.deepcopy(net), net.copy()):
        np.testing.assert_array_equal(other.theta, net.theta)
        np.testing.assert_array_equal(other.forward(X)[0], net.forward(X)[0])
        other.params["W1"][0, 0] += 1.0
        assert other.theta[0] == other.params["W1"][0, 0]  # views rebuilt on the copy's own buffer
        assert net.theta[0] != other.theta[0]


@pytest.mark.parametrize("output, loss", [("sigmoid", "bce"), ("softmax", "ce"), ("linear", "mse"),
                                          ("sigmoid", "mse")])
def test_predict_agrees_with_the_reference(output, loss):
    # the loss decides the task: bce / ce classify, mse regresses (also with a sigmoid output)
    X, _ = make_data([3, 4, 2], 9, output, loss, 1)
    net = dk.Network([3, 4, 2], output=output, loss=loss).initialize("he", rng=3)
    expected = R.predict(X, net.get_params(), output=output, loss=loss)
    got = net.predict(X)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)


# The wide path with 2+ column chunks runs a pass in one OpenMP region (each chunk's forward and column-local
# backward, then every layer's dW tiles); _core.set_wide_fused(False) runs the per-layer regions instead. The same
# tasks either way: the same bits for any thread count, and the reference's values to rounding.
WIDE_CASES = [("relu", "softmax", "ce", None), ("tanh", "sigmoid", "bce", 0.8), ("leaky_relu", "linear", "mse", [0.9, 0.8, 0.7])]


@pytest.mark.parametrize("hidden,output,loss,keep", WIDE_CASES, ids=[c[0] for c in WIDE_CASES])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_wide_one_region_pass_equals_per_layer_regions_and_reference(hidden, output, loss, keep, dtype):
    from dnnkit import _core
    dims, m = [40, 96, 48, 4], 1100  # wide path, 3 column chunks (512, 512, 76)
    X, Y = make_data(dims, m, output, loss, 2)
    net = dk.Network(dims, hidden=hidden, output=output, loss=loss, dtype=dtype).initialize("glorot", rng=2)
    L = len(dims) - 1
    masks = masks_for(dims, m, keep, 7)[0] if keep is not None else None
    kw = dict(keep_prob=keep if keep is not None else 1.0, masks=masks)
    out = {}
    try:
        for fused in (True, False):
            _core.set_wide_fused(fused)
            for n in (1, 2, 3):
                dk.set_num_threads(n)
                net.backward(X, Y, l2=0.3, l1=0.1, **kw)
                out[fused, n] = (net.grad_vector.tobytes(), net.last_cost, net.forward(X, **kw)[0].tobytes())
    finally:
        _core.set_wide_fused(True)
        dk.set_num_threads(0)
    assert len(set(out.values())) == 1
    params = {k: v.astype(np.float64) for k, v in net.params.items()}
    AL_ref, caches = R.forward_propagation(X, params, hidden, output, keep_prob=kw["keep_prob"], masks=masks)
    g_ref = R.backward_propagation(X, Y, caches, params, hidden, output, loss, l2=0.3, l1=0.1, keep_prob=kw["keep_prob"])
    J_ref = R.compute_cost(AL_ref, Y, params, loss, l2=0.3, l1=0.1, ZL=caches[f"Z{L}"])
    grads = net.backward(X, Y, l2=0.3, l1=0.1, **kw)
    tol = TOL[dtype]
    np.testing.assert_allclose(net.last_cost, J_ref, rtol=tol["rtol"])
    scale = max(np.abs(g_ref[k]).max() for k in g_ref)
    for k in g_ref:
        np.testing.assert_allclose(grads[k], g_ref[k], rtol=tol["rtol"], atol=tol["atol"] * scale + 1e-300)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_wide_one_region_training_equals_per_layer_regions(dtype):
    from dnnkit import _core
    dims = [200, 128, 64, 3]  # > 32768 parameters: the update runs in the pass's region (train.hpp, MLP::post)
    X, Y = make_data(dims, 520, "softmax", "ce", 5)
    res = []
    try:
        for fused in (True, False):
            _core.set_wide_fused(fused)
            for n in (1, 2, 3):
                net = dk.Network(dims, output="softmax", dtype=dtype).initialize("he", rng=0)
                h1 = net.fit(X, Y, epochs=3, learning_rate=0.05, optimizer="adam", l2=0.1, seed=3, n_threads=n)
                h2 = net.fit(X, Y, epochs=4, learning_rate=0.05, batch_size=300, keep_prob=0.8, seed=4, n_threads=n,
                             optimizer="momentum", log_every=2)
                res.append((net.theta.tobytes(), repr([(h.train_cost, h.train_error, h.grad_norms) for h in (h1, h2)])))
    finally:
        _core.set_wide_fused(True)
    assert len(set(res)) == 1
