"""The series inside the relu / leaky_relu / linear fast path (cpp/dnnkit/gradcheck/smooth.hpp, SmoothPath::pwl_unit,
called from fast_path.hpp): in a linear region the cost is an analytic function of the perturbed pre-activation,
so the centered difference comes from its odd Taylor coefficients with a proven tail bound. Coordinate by
coordinate it equals the fast path's exact loss pairs (the path as it was, _core._set_pwl_series(False)), the
general path, the reference loop and the exact centered difference in 40-digit arithmetic (mpmath), for every
loss, with dropout and L2/L1; near kinks the coordinates are routed and flagged exactly as before; the same bits
on every SIMD path and thread count. Oracles are never numbers produced by the code under test."""
import contextlib

import numpy as np
import pytest

import dnnkit as dk
import dnnkit._core as C
from dnnkit import reference as ref

from test_gradcheck import _native, fast_and_general, make_params, make_Y, ref_loop
from test_gradcheck_smooth import (_masks, assert_same_bits_for_any_thread_count, assert_split_and_sample_give_the_full_bits,
                                   exact_cd, large_weight_case)


@contextlib.contextmanager
def series(on):
    prev = C._set_pwl_series(on)
    try:
        yield
    finally:
        C._set_pwl_series(prev)


def old_fast(net, X, Y, **kw):
    """The fast path with its exact loss pairs for every coordinate (no series): as before this change."""
    with series(False):
        return _native(net, X, Y, True, **kw)


# dims, hidden, output, loss, l2, l1, keep
CASES = [
    ([5, 7, 6, 3], "relu", "softmax", "ce", 0.0, 0.0, 1.0),
    ([5, 7, 6, 3], "relu", "softmax", "ce", 0.4, 0.3, [1.0, 0.7, 0.8]),
    ([4, 9, 1], "relu", "sigmoid", "bce", 0.7, 0.0, 1.0),               # L = 2: Jacobian = a row of W2
    ([4, 8, 6, 5, 2], "relu", "sigmoid", "bce", 0.0, 0.2, 0.75),        # L = 4
    ([5, 7, 6, 5, 3], "leaky_relu", "softmax", "ce", 0.3, 0.0, [0.9, 0.8, 0.7, 0.9]),
    ([4, 6, 5, 2], "leaky_relu", "linear", "mse", 0.2, 0.1, 1.0),
    ([4, 6, 5, 2], "leaky_relu", "sigmoid", "mse", 0.0, 0.0, 0.8),      # mse through a sigmoid
    ([6, 5, 4, 3], "linear", "softmax", "ce", 0.1, 0.1, [0.8, 1.0, 0.7]),
    ([6, 5, 4, 3, 2], "linear", "linear", "mse", 0.0, 0.0, 1.0),
    ([5, 6, 4, 3], "relu", "sigmoid", "bce", 0.0, 0.0, [0.8, 0.9, 0.7]),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[1]}-{c[2]}-{c[3]}-L{len(c[0]) - 1}-kp{c[6]}")
def test_series_equals_old_fast_path_general_reference_loop_and_exact(case):
    dims, hidden, output, loss, l2, l1, keep = case
    m = 13
    net, X, Y, kp, fast, gen, n_hidden = fast_and_general(case, 40, m)
    kw = dict(l2=l2, l1=l1, keep_prob=kp, seed=5, eps=1e-6)
    old = old_fast(net, X, Y, **kw)
    st, so = fast.engine_stats, old.engine_stats
    # the routing (and so the flags) is the old fast path's, exactly; most coordinates by the series
    assert (st["fast"], st["routed"], st["general"]) == (so["fast"], so["routed"], so["general"])
    assert so["series"] == 0 and st["series"] > 0.9 * st["fast"]
    assert st["fast"] + st["routed"] == n_hidden
    np.testing.assert_array_equal(fast.flags, old.flags)
    np.testing.assert_array_equal(fast.flags, gen.flags)
    scale = np.abs(gen.approx).max()
    np.testing.assert_allclose(fast.approx, old.approx, rtol=1e-9, atol=1e-13 * scale)
    np.testing.assert_allclose(fast.approx, gen.approx, rtol=1e-9, atol=1e-13 * scale)
    masks = _masks(dims, m, kp, 5)
    g, approx_ref = ref_loop(net, X, Y, l2, l1, kp, masks)
    np.testing.assert_allclose(fast.approx, approx_ref, rtol=1e-6, atol=1e-8 * max(1.0, np.abs(g).max()))
    # the true centered difference, 40 digits, where no kink is crossed (flags 0)
    sub = np.arange(0, net.n_params, 3)
    sub = sub[fast.flags[sub] == 0]
    exact = exact_cd(net, X, Y, 1e-6, l2, l1, kp, masks, indices=sub)
    np.testing.assert_allclose(fast.approx[sub], exact, rtol=1e-11, atol=1e-14 * np.abs(exact).max())
    assert fast.verdict == "correct", str(fast)


def _near_kink_net(hidden, seed):
    """A relu / leaky net whose pre-activations sit exactly on (Z = 0) or within 1e-12 of a kink, in the perturbed
    layer and downstream: X integers, W multiples of 1/8, biases set so that W x_k + b is exactly 0 (dyadic sums
    are exact) or 1e-12 for some (unit, example)."""
    rng = np.random.default_rng(seed)
    dims, m = [5, 7, 6, 3], 9
    X = rng.integers(-3, 4, (5, m)).astype(float)
    p = {}
    for l in range(1, 4):
        p[f"W{l}"] = rng.integers(-8, 9, (dims[l], dims[l - 1])) / 8.0
        p[f"b{l}"] = rng.integers(-4, 5, (dims[l], 1)) / 8.0
    p["b1"][0, 0] = -(p["W1"][0] @ X[:, 2])          # Z1[0, 2] == 0 exactly
    p["b1"][3, 0] = -(p["W1"][3] @ X[:, 5]) + 1e-12  # Z1[3, 5] ~ 1e-12
    A1 = np.maximum(p["W1"] @ X + p["b1"], 0.0) if hidden == "relu" else None
    if A1 is not None:
        p["b2"][1, 0] = -(p["W2"][1] @ A1[:, 4])   # downstream: Z2[1, 4] ~ 0
    Y = make_Y("ce", "softmax", 3, m, rng)
    return dk.Network(dims, hidden=hidden, output="softmax", params=p, alpha=0.05), X, Y


@pytest.mark.parametrize("hidden", ["relu", "leaky_relu"])
@pytest.mark.parametrize("eps", [1e-7, 1e-6])
def test_near_kink_coordinates_are_routed_and_flagged_exactly_as_before(hidden, eps):
    net, X, Y = _near_kink_net(hidden, 21)
    fast = _native(net, X, Y, True, eps=eps, l1=0.1)
    old = old_fast(net, X, Y, eps=eps, l1=0.1)
    gen = _native(net, X, Y, False, eps=eps, l1=0.1)
    st, so = fast.engine_stats, old.engine_stats
    assert st["routed"] > 0 and st["routed"] == so["routed"] and st["fast"] == so["fast"]
    assert st["series"] > 0
    # the general path flags exactly the coordinates that cross a kink: a series coordinate would show as a 0 here
    np.testing.assert_array_equal(fast.flags, gen.flags)
    np.testing.assert_array_equal(fast.flags, old.flags)
    assert (fast.flags & 1).sum() > 0 and fast.n_kinks == gen.n_kinks
    # every number equals the general path's (routed ones are the general path's own)
    scale = np.abs(gen.approx).max()
    np.testing.assert_allclose(fast.approx, gen.approx, rtol=1e-9, atol=1e-13 * scale)
    ok = np.flatnonzero(fast.flags == 0)[::2]
    exact = exact_cd(net, X, Y, eps, l1=0.1, indices=ok)
    np.testing.assert_allclose(fast.approx[ok], exact, rtol=1e-11, atol=1e-14 * np.abs(exact).max())


@pytest.mark.parametrize("hidden", ["relu", "leaky_relu", "linear"])
def test_large_eps_takes_the_exact_loss_pairs_where_the_bound_fails(hidden):
    """eps = 0.02: the tail bound fails for most coordinates; those use the old loss pairs (the same bits as the
    old fast path), the others still agree to rounding; routing and flags unchanged."""
    rng = np.random.default_rng(8)
    dims, m = [5, 6, 4, 3], 9
    net = dk.Network(dims, hidden=hidden, output="softmax", params=make_params(dims, rng))
    X = rng.standard_normal((5, m))
    Y = make_Y("ce", "softmax", 3, m, rng)
    fast = _native(net, X, Y, True, eps=0.02, l1=0.2)
    old = old_fast(net, X, Y, eps=0.02, l1=0.2)
    st = fast.engine_stats
    assert st["series"] < 0.5 * st["fast"] and st["fast"] == old.engine_stats["fast"]
    np.testing.assert_array_equal(fast.flags, old.flags)
    np.testing.assert_allclose(fast.approx, old.approx, rtol=1e-10, atol=1e-13 * np.abs(old.approx).max())
    assert np.mean(fast.approx == old.approx) > 0.4  # bit-equal where the loss pairs did them


def test_share_of_coordinates_on_the_series():
    rng = np.random.default_rng(5)
    dims, m = [30, 40, 30, 5], 64
    for hidden in ("relu", "leaky_relu", "linear"):
        net = dk.Network(dims, hidden=hidden, output="softmax").initialize("he", rng=1)
        X = rng.standard_normal((30, m))
        Y = make_Y("ce", "softmax", 5, m, rng)
        r = dk.gradcheck(net, X, Y, l2=0.3)
        st = r.engine_stats
        n_hidden = net.n_params - dims[-1] * (dims[-2] + 1)
        assert st["fast"] + st["routed"] == n_hidden
        assert st["series"] > 0.97 * n_hidden, (hidden, st)
        assert r.verdict == "correct"


def _bits_case(hidden):
    rng = np.random.default_rng(19)
    dims, m = [12, 16, 10, 8, 4], 37  # m not a multiple of 8: the sums' tails
    net = dk.Network(dims, hidden=hidden, output="softmax", params=make_params(dims, rng))
    X = rng.standard_normal((12, m))
    Y = make_Y("ce", "softmax", 4, m, rng)
    return net, X, Y


def test_every_simd_path_gives_the_same_bits():
    info = C.simd_info()
    out = {}
    try:
        for name in info["available"]:
            C.set_simd(name)
            assert C.simd_info()["active"] == name
            res = []
            for hidden in ("relu", "leaky_relu", "linear"):
                net, X, Y = _bits_case(hidden)
                r = dk.gradcheck(net, X, Y, l2=0.1, l1=0.05, keep_prob=0.85, seed=4)
                b = dk.gradcheck(dk.Network(list(net.layer_dims), hidden=hidden, output="sigmoid", loss="bce",
                                            params=net.get_params()), X, (Y > 0).astype(float))
                assert r.engine_stats["series"] > 0 and b.engine_stats["series"] > 0
                res += [r.approx.copy(), r.flags.copy(), b.approx.copy()]
            out[name] = res
    finally:
        C.set_simd("auto")
    base = out["baseline"]
    for name, res in out.items():
        for a, b in zip(res, base):
            np.testing.assert_array_equal(a, b, err_msg=name)


@pytest.mark.parametrize("hidden", ["relu", "leaky_relu"])
def test_series_identical_for_any_thread_count(hidden):
    net, X, Y = _bits_case(hidden)
    assert_same_bits_for_any_thread_count(net, X, Y, "series")


def test_split_and_sampled_checks_give_the_full_checks_bits():
    net, X, Y = _bits_case("relu")
    assert_split_and_sample_give_the_full_bits(net, X, Y)


def test_correct_gradient_scores_as_the_general_path():
    rng = np.random.default_rng(2)
    dims, m = [20, 16, 12, 5], 40
    for hidden in ("relu", "leaky_relu", "linear"):
        net = dk.Network(dims, hidden=hidden, output="softmax", params=make_params(dims, rng))
        X = rng.standard_normal((20, m))
        Y = make_Y("ce", "softmax", 5, m, rng)
        fast = _native(net, X, Y, True)
        gen = _native(net, X, Y, False)
        assert fast.engine_stats["series"] > 0
        assert fast.verdict == "correct"
        assert float(fast) < 1e-12
        assert abs(float(fast) - float(gen)) < 1e-16


def test_the_switch_restores_and_reports():
    prev = C._set_pwl_series(False)
    try:
        assert C._set_pwl_series(False) is False
    finally:
        C._set_pwl_series(prev)
    assert C._set_pwl_series(prev) is prev


@pytest.mark.parametrize("hidden", ["relu", "leaky_relu"])
@pytest.mark.parametrize("loss", ["ce", "bce"])
def test_large_weights_and_outputs_near_0_and_1(hidden, loss):
    """Weights x30: huge output gains, outputs at p ~ 1 - 1e-12 and s ~ 1e-15. The series (where its bound
    holds) still equals the exact centered difference per component (60 digits) and the reference loop; the
    coordinates whose bound fails use the loss pairs, routing and flags as the old fast path's."""
    net, X, Y, dims = large_weight_case(hidden, loss)
    AL, _ = ref.forward_propagation(X, net.get_params(), hidden, net.output, alpha=net.alpha)
    assert AL.max() > 1 - 1e-9 and AL.min() < 1e-9  # outputs near 0 and 1
    fast = _native(net, X, Y, True, l2=0.1, eps=1e-7)
    old = old_fast(net, X, Y, l2=0.1, eps=1e-7)
    assert fast.engine_stats["series"] > 0
    assert {k: v for k, v in fast.engine_stats.items() if k != "series"} == \
        {k: v for k, v in old.engine_stats.items() if k != "series"}
    np.testing.assert_array_equal(fast.flags, old.flags)
    ok = np.flatnonzero(fast.flags == 0)
    exact = np.full(net.n_params, np.nan)
    exact[ok] = exact_cd(net, X, Y, 1e-7, l2=0.1, dps=60, indices=ok)
    off = 0
    for l in range(1, len(dims)):
        for n in (dims[l] * dims[l - 1], dims[l]):
            sl = np.arange(off, off + n)
            off += n
            sl = sl[fast.flags[sl] == 0]
            if sl.size:
                np.testing.assert_allclose(fast.approx[sl], exact[sl], rtol=1e-10,
                                           atol=1e-13 * np.abs(exact[sl]).max() + 1e-300)
    g, approx_ref = ref_loop(net, X, Y, 0.1, 0.0, eps=1e-7)
    np.testing.assert_allclose(fast.approx, approx_ref, rtol=1e-5, atol=1e-7 * max(1.0, np.abs(g).max()))
