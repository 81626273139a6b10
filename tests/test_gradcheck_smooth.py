"""The smooth path of the native gradient checker (tanh / sigmoid hidden layers, cpp/dnnkit/gradcheck_smooth.hpp):
coordinate by coordinate equal to the general path, to the reference loop, and to the exact centered difference
computed in 40-digit arithmetic (mpmath), per activation and loss, with dropout and L2/L1, on saturated units
and outputs near 0 and 1; the exact fallback where the series bound fails; the same bits on every SIMD path and
thread count. Oracles are never numbers produced by the code under test."""
import numpy as np
import pytest

import dnnkit as dk
import dnnkit._core as C
from dnnkit import reference as ref
from dnnkit._params import params_to_vector, vector_to_params

from test_gradcheck import _native, fast_and_general, make_params, make_Y, ref_loop

mpmath = pytest.importorskip("mpmath")


def _masks(dims, m, kp, seed):
    L = len(dims) - 1
    return [None if kp[l] == 1.0 else dk.dropout_mask((dims[l], m), kp[l], seed, 0, l) for l in range(L)]


def exact_cd(net, X, Y, eps, l2=0.0, l1=0.0, kp=None, masks=None, indices=None, dps=40):
    """(J(theta + eps e_k) - J(theta - eps e_k)) / 2 eps of the true cost in `dps`-digit arithmetic (mpmath):
    the number the engine must reproduce to rounding, independently of any float64 evaluation."""
    mp = mpmath.mp
    mp.dps = dps
    dims, L = list(net.layer_dims), net.L
    m = X.shape[1]
    theta = [mp.mpf(float(t)) for t in params_to_vector(net.get_params())]
    Xm = [[mp.mpf(float(v)) for v in row] for row in X]
    Ym = [[mp.mpf(float(v)) for v in row] for row in Y]
    kp = kp or [1.0] * L
    scale = [None if masks is None or masks[l] is None else
             [[mp.mpf(float(v)) / mp.mpf(kp[l]) for v in row] for row in masks[l]] for l in range(L)]
    alpha = mp.mpf(float(net.alpha))
    act = {"tanh": mp.tanh, "sigmoid": lambda z: 1 / (1 + mp.exp(-z)), "linear": lambda z: z,
           "relu": lambda z: z if z > 0 else mp.mpf(0), "leaky_relu": lambda z: z if z > 0 else alpha * z}

    def J(th):
        off, A = 0, [row[:] for row in Xm]
        if scale[0] is not None:
            A = [[A[i][k] * scale[0][i][k] for k in range(m)] for i in range(dims[0])]
        reg = mp.mpf(0)
        for l in range(1, L + 1):
            n, p = dims[l], dims[l - 1]
            W = [th[off + r * p: off + (r + 1) * p] for r in range(n)]
            off += n * p
            b = th[off: off + n]
            off += n
            reg += (mp.mpf(l2) / (2 * m)) * sum(w * w for r in W for w in r)
            reg += (mp.mpf(l1) / (2 * m)) * sum(abs(w) for r in W for w in r)
            Z = [[mp.fsum(W[r][j] * A[j][k] for j in range(p)) + b[r] for k in range(m)] for r in range(n)]
            if l < L:
                A = [[act[net.hidden](Z[r][k]) for k in range(m)] for r in range(n)]
                if scale[l] is not None:
                    A = [[A[r][k] * scale[l][r][k] for k in range(m)] for r in range(n)]
        nL = dims[L]
        tot = mp.mpf(0)
        for k in range(m):
            z = [Z[c][k] for c in range(nL)]
            y = [Ym[c][k] for c in range(nL)]
            if net.loss == "ce":
                mx = max(z)
                tot += mx + mp.log(mp.fsum(mp.exp(v - mx) for v in z)) - mp.fsum(yc * v for yc, v in zip(y, z))
            elif net.loss == "bce":
                tot += mp.fsum(mp.log(1 + mp.exp(v)) - yc * v for yc, v in zip(y, z))
            else:
                a = z if net.output == "linear" else [1 / (1 + mp.exp(-v)) for v in z]
                tot += mp.fsum((av - yc) ** 2 / 2 for av, yc in zip(a, y))
        return tot / m + reg

    e = mp.mpf(eps)
    out = []
    for q in (range(len(theta)) if indices is None else indices):
        tp, tn = theta[:], theta[:]
        tp[q] += e
        tn[q] -= e
        out.append(float((J(tp) - J(tn)) / (2 * e)))
    return np.array(out)


# dims, hidden, output, loss, l2, l1, keep
CASES = [
    ([5, 7, 6, 3], "tanh", "softmax", "ce", 0.0, 0.0, 1.0),
    ([5, 7, 6, 3], "tanh", "softmax", "ce", 0.4, 0.3, [1.0, 0.7, 0.8]),
    ([4, 9, 1], "sigmoid", "sigmoid", "bce", 0.7, 0.0, 1.0),
    ([4, 8, 6, 5, 2], "tanh", "sigmoid", "bce", 0.0, 0.2, 0.75),       # L = 4: series through two hidden layers
    ([5, 7, 6, 5, 3], "sigmoid", "softmax", "ce", 0.3, 0.0, [0.9, 0.8, 0.7, 0.9]),
    ([4, 6, 5, 2], "tanh", "linear", "mse", 0.2, 0.1, 1.0),
    ([4, 6, 5, 2], "sigmoid", "sigmoid", "mse", 0.0, 0.0, 0.8),
    ([6, 5, 4, 3], "sigmoid", "linear", "mse", 0.1, 0.1, [0.8, 1.0, 0.7]),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[1]}-{c[2]}-{c[3]}-L{len(c[0]) - 1}-kp{c[6]}")
def test_smooth_equals_general_reference_loop_and_exact(case):
    dims, hidden, output, loss, l2, l1, keep = case
    m = 11
    net, X, Y, kp, fast, gen, n_hidden = fast_and_general(case, 70, m)
    assert fast.engine_stats["fast"] + fast.engine_stats["routed"] == n_hidden
    assert fast.engine_stats["fast"] > 0.9 * n_hidden
    scale = np.abs(gen.approx).max()
    np.testing.assert_allclose(fast.approx, gen.approx, rtol=1e-9, atol=1e-13 * scale)
    np.testing.assert_array_equal(fast.flags, gen.flags)
    masks = _masks(dims, m, kp, 5)
    g, approx_ref = ref_loop(net, X, Y, l2, l1, kp, masks)
    np.testing.assert_allclose(fast.approx, approx_ref, rtol=1e-6, atol=1e-8 * max(1.0, np.abs(g).max()))
    # the true centered difference, 40 digits: far tighter than the float64 loop can be
    sub = np.arange(0, net.n_params, 3)  # every third coordinate: all components, a bounded cost
    exact = exact_cd(net, X, Y, 1e-6, l2, l1, kp, masks, indices=sub)
    np.testing.assert_allclose(fast.approx[sub], exact, rtol=1e-11, atol=1e-14 * np.abs(exact).max())
    assert fast.verdict == "correct", str(fast)


def large_weight_case(hidden, loss):
    """[4, 6, 5, n_out] with every W of make_params scaled by 30 (saturated tanh / sigmoid units, huge output
    gains, outputs near 0 and 1), m = 7, softmax + ce or sigmoid + bce: (net, X, Y, dims). Shared with
    test_gradcheck_series_pwl."""
    rng = np.random.default_rng(3 if loss == "ce" else 4)
    dims = [4, 6, 5, 3 if loss == "ce" else 2]
    m = 7
    p = make_params(dims, rng)
    for l in (1, 2, 3):
        p[f"W{l}"] *= 30.0
    X = rng.standard_normal((4, m))
    output = "softmax" if loss == "ce" else "sigmoid"
    Y = make_Y(loss, output, dims[-1], m, rng)
    return dk.Network(dims, hidden=hidden, output=output, loss=loss, params=p), X, Y, dims


@pytest.mark.parametrize("hidden", ["tanh", "sigmoid"])
@pytest.mark.parametrize("loss", ["ce", "bce"])
def test_saturated_units_and_outputs_near_0_and_1(hidden, loss):
    """Weights x30: most hidden units saturated (|z| >> 1, g' down to 1e-20 and below), outputs at p ~ 1 - 1e-12
    and s ~ 1e-15: the smooth path still equals the exact centered difference (where the general path's
    1 - tanh(a) tanh(b) loses digits), and the reference loop within its own rounding."""
    net, X, Y, dims = large_weight_case(hidden, loss)
    AL, cache = ref.forward_propagation(X, net.get_params(), hidden, net.output)
    Z1 = cache["Z1"]
    assert np.mean(np.abs(Z1) > 10) > 0.3  # really saturated
    assert AL.max() > 1 - 1e-9 and AL.min() < 1e-9  # outputs near 0 and 1
    fast = _native(net, X, Y, True, l2=0.1, eps=1e-7)
    # gains of ~30 per layer widen the tail bound: some coordinates go to the (exact) general path, most do not
    assert fast.engine_stats["fast"] > 0.5 * (net.n_params - dims[-1] * (dims[-2] + 1))
    exact = exact_cd(net, X, Y, 1e-7, l2=0.1, dps=60)
    # per component: the scale of the component (saturated layers have tiny gradients)
    off = 0
    for l in range(1, len(dims)):
        for n in (dims[l] * dims[l - 1], dims[l]):
            sl = slice(off, off + n)
            off += n
            np.testing.assert_allclose(fast.approx[sl], exact[sl], rtol=1e-10,
                                       atol=1e-13 * np.abs(exact[sl]).max() + 1e-300)
    g, approx_ref = ref_loop(net, X, Y, 0.1, 0.0, eps=1e-7)
    np.testing.assert_allclose(fast.approx, approx_ref, rtol=1e-5, atol=1e-7 * max(1.0, np.abs(g).max()))
    assert fast.verdict == "correct", str(fast)


@pytest.mark.parametrize("hidden", ["tanh", "sigmoid"])
def test_large_eps_falls_back_to_the_exact_general_path(hidden):
    """eps = 0.05: the series bound fails for most coordinates; those take the general path and equal it exactly
    (same numbers, same flags), the rest still agree to rounding."""
    rng = np.random.default_rng(8)
    dims, m = [5, 6, 4, 3], 9
    net = dk.Network(dims, hidden=hidden, output="softmax", params=make_params(dims, rng, scale=2.0))
    X = 3.0 * rng.standard_normal((5, m))
    Y = make_Y("ce", "softmax", 3, m, rng)
    fast = _native(net, X, Y, True, eps=0.05, l1=0.2)
    gen = _native(net, X, Y, False, eps=0.05, l1=0.2)
    assert fast.engine_stats["routed"] > 0.5 * (net.n_params - 15)
    np.testing.assert_allclose(fast.approx, gen.approx, rtol=1e-10, atol=1e-13 * np.abs(gen.approx).max())
    np.testing.assert_array_equal(fast.flags, gen.flags)


def test_l1_kinks_flagged_as_before():
    rng = np.random.default_rng(12)
    dims, m = [4, 5, 3, 2], 6
    p = make_params(dims, rng)
    p["W1"][0, 1] = 3e-8  # |w| < eps: the L1 kink
    p["W2"][2, 0] = -1e-9
    net = dk.Network(dims, hidden="tanh", output="softmax", params=p)
    X = rng.standard_normal((4, m))
    Y = make_Y("ce", "softmax", 2, m, rng)
    fast = _native(net, X, Y, True, l1=0.5)
    gen = _native(net, X, Y, False, l1=0.5)
    np.testing.assert_array_equal(fast.flags, gen.flags)
    assert fast.flags[1] != 0 and fast.flags.sum() >= 2
    ok = fast.flags == 0
    np.testing.assert_allclose(fast.approx[ok], gen.approx[ok], rtol=1e-9, atol=1e-13 * np.abs(gen.approx).max())


def _bits_case():
    rng = np.random.default_rng(19)
    dims, m = [12, 16, 10, 8, 4], 37  # m not a multiple of 8: the sums' tails
    net = dk.Network(dims, hidden="tanh", output="softmax", params=make_params(dims, rng))
    X = rng.standard_normal((12, m))
    Y = make_Y("ce", "softmax", 4, m, rng)
    return net, X, Y


def test_every_simd_path_gives_the_same_bits():
    net, X, Y = _bits_case()
    info = C.simd_info()
    assert info["available"][0] == "baseline" and info["detected"] in info["available"]
    out = {}
    try:
        for name in info["available"]:
            C.set_simd(name)
            assert C.simd_info()["active"] == name
            r = dk.gradcheck(net, X, Y, l2=0.1, l1=0.05, keep_prob=0.85, seed=4)
            s = dk.gradcheck(dk.Network(list(net.layer_dims), hidden="sigmoid", output="sigmoid", loss="bce",
                                        params=net.get_params()), X, (Y > 0).astype(float), keep_prob=0.9, seed=1)
            out[name] = (r.approx.copy(), r.flags.copy(), s.approx.copy())
    finally:
        C.set_simd("auto")
    assert C.simd_info()["active"] == info["detected"]
    base = out["baseline"]
    for name, (a, f, b) in out.items():
        np.testing.assert_array_equal(a, base[0], err_msg=name)
        np.testing.assert_array_equal(f, base[1], err_msg=name)
        np.testing.assert_array_equal(b, base[2], err_msg=name)
    with pytest.raises(ValueError, match="simd"):
        C.set_simd("sse9")


def assert_same_bits_for_any_thread_count(net, X, Y, key):
    """The full check at 1, 2 and 7 threads (dropout, L2 and L1 on): the same numbers, flags and engine_stats, and
    engine_stats[key] > 0 (the path under test was taken). Shared with test_gradcheck_series_pwl."""
    before = dk.get_num_threads()
    try:
        out = []
        for t in (1, 2, 7):
            dk.set_num_threads(t)
            r = dk.gradcheck(net, X, Y, l2=0.1, l1=0.05, keep_prob=0.85, seed=4, eps=1e-6)
            out.append((r.approx.copy(), r.flags.copy(), r.engine_stats))
    finally:
        dk.set_num_threads(0 if before == 0 else before)
    assert out[0][2][key] > 0
    for a, f, st in out[1:]:
        np.testing.assert_array_equal(a, out[0][0])
        np.testing.assert_array_equal(f, out[0][1])
        assert st == out[0][2]


def assert_split_and_sample_give_the_full_bits(net, X, Y):
    """A coordinate's number does not depend on which other coordinates are checked with it: checks of pieces of
    37 coordinates, merged, and a sample check equal the full check bit for bit."""
    full = dk.gradcheck(net, X, Y, l2=0.2)
    n = net.n_params
    parts = [dk.gradcheck(net, X, Y, l2=0.2, indices=np.arange(s, min(n, s + 37))) for s in range(0, n, 37)]
    merged = dk.GradcheckReport.merge(parts)
    np.testing.assert_array_equal(merged.approx, full.approx)
    sample = dk.gradcheck(net, X, Y, l2=0.2, mode="sample", k=3)
    np.testing.assert_array_equal(sample.approx, full.approx[sample.indices])


def test_smooth_path_identical_for_any_thread_count():
    net, X, Y = _bits_case()
    assert_same_bits_for_any_thread_count(net, X, Y, "fast")


def test_split_and_sampled_checks_give_the_full_checks_bits():
    net, X, Y = _bits_case()
    assert_split_and_sample_give_the_full_bits(net, X, Y)


def test_correct_gradient_scores_as_the_general_path():
    """net.backward checked: the smooth path's score is the general path's to ~1e-17 (the score is the
    centered difference's own O(eps^2) truncation, not engine noise)."""
    rng = np.random.default_rng(2)
    dims, m = [20, 16, 12, 5], 40
    for hidden in ("tanh", "sigmoid"):
        net = dk.Network(dims, hidden=hidden, output="softmax", params=make_params(dims, rng))
        X = rng.standard_normal((20, m))
        Y = make_Y("ce", "softmax", 5, m, rng)
        fast = _native(net, X, Y, True)
        gen = _native(net, X, Y, False)
        assert fast.verdict == "correct"
        assert float(fast) < 1e-12
        assert abs(float(fast) - float(gen)) < 1e-16
