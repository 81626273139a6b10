"""The gradient checker's pure numerics (cpp/dnnkit/gradcheck/numerics.hpp) on their own, through the test-only
binding _core.gc_numerics, against closed forms computed here: Taylor series with a remainder far below the
rounding (tiny perturbations, where the naive difference g(z + d) - g(z) loses digits), exact rationals
(fractions.Fraction) and Python's math module."""
import math
from fractions import Fraction

import numpy as np
import pytest

from dnnkit import _core

N = _core.gc_numerics


def _sig(z):
    return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


def _rel(a, b):
    return abs(a - b) / abs(b)


# ------------------------------------------------------------------ activation deltas
@pytest.mark.parametrize("z", [-2.0, -0.3, 0.0, 0.7, 3.0])
@pytest.mark.parametrize("d", [1e-9, -3e-7, 2e-5])
def test_tanh_delta_is_cancellation_free(z, d):
    t = math.tanh(z)
    g1, g2, g3 = 1 - t * t, -2 * t * (1 - t * t), (1 - t * t) * (6 * t * t - 2)
    taylor = g1 * d + g2 * d * d / 2 + g3 * d ** 3 / 6  # remainder O(d^4): below 1e-19 relative
    v, crossed = N.act_delta("tanh", z, d, 0.0)
    assert not crossed
    assert _rel(v, taylor) < 2e-14  # the reference's own 1 - t*t rounds to ~eps/(1 - t^2)
    # the naive difference is much worse for the tiniest d (what the identity is for)
    if abs(d) < 1e-8 and z != 0.0:
        assert _rel(math.tanh(z + d) - t, taylor) > 1e-10


@pytest.mark.parametrize("z", [-30.0, -2.0, 0.0, 0.5, 4.0, 35.0])
@pytest.mark.parametrize("d", [1e-9, -4e-6, 1e-5])  # the series' remainder ~ d^3 / 24 relative: keep d small
def test_sigmoid_delta_is_cancellation_free(z, d):
    s = _sig(z)
    q = math.exp(-z) * s if z >= 0 else 1 - s  # 1 - s without cancellation
    g1 = s * q
    g2 = g1 * (q - s)
    g3 = g1 * (1 - 6 * s * q)
    taylor = g1 * d + g2 * d * d / 2 + g3 * d ** 3 / 6
    v, crossed = N.act_delta("sigmoid", z, d, 0.0)
    assert not crossed
    assert _rel(v, taylor) < 1e-14


@pytest.mark.parametrize("act,alpha", [("relu", 0.0), ("leaky_relu", 0.05)])
@pytest.mark.parametrize("z,d,crossed", [(0.5, 0.1, False), (0.5, -0.2, False), (-1.0, 0.5, False),
                                         (-0.5, 1.0, True), (0.25, -1.0, True), (0.0, 0.1, True),
                                         (0.0, -0.1, True), (-0.1, 0.1, True), (0.0, 0.0, False)])
def test_piecewise_linear_deltas_and_kink_flags(act, alpha, z, d, crossed):
    def g(x):
        x = Fraction(x)
        return x if x > 0 else Fraction(alpha) * x

    exact = g(z + d) - g(z) if act == "leaky_relu" else max(Fraction(z + d), 0) - max(Fraction(z), 0)
    v, cr = N.act_delta(act, z, d, alpha)
    assert cr == crossed
    assert v == pytest.approx(float(exact), rel=1e-15, abs=0.0)
    if not crossed and (z > 0) == (z + d > 0):
        assert v == (d if z > 0 else alpha * d)  # inside one linear piece: exactly the slope times d


def test_linear_delta_is_exact():
    assert N.act_delta("linear", 0.3, 1e-300, 0.0) == (1e-300, False)


# ------------------------------------------------------------------ expm1 / log1p / |.| differences
@pytest.mark.parametrize("x", [1e-300, -1e-12, 3e-9, -2e-5, 1e-3, -1 / 512, 1 / 512, 0.01, -0.7, 5.0])
def test_expm1_and_log1p_fast_agree_with_libm(x):
    assert _rel(N.expm1_fast(x), math.expm1(x)) <= 2.3e-16
    assert _rel(N.log1p_fast(x), math.log1p(x)) <= 2.3e-16


@pytest.mark.parametrize("x", [1e-200, -3e-10, 1e-5, -1 / 256, 1 / 128, -1 / 128])
def test_log1p_poly_within_its_range(x):
    assert _rel(N.log1p_poly(x), math.log1p(x)) <= 4.5e-16


@pytest.mark.parametrize("w,v,e", [(0.3, 1.0, 1e-6), (-0.3, 1.0, 1e-6), (2e-7, 1.0, 1e-6), (-2e-7, -0.5, 1e-6),
                                   (0.0, 1.0, 1e-6), (1e-3, -0.25, 1e-2), (-5.0, 3.0, 1e-7)])
def test_abs_diff_is_exact(w, v, e):
    W, V, E = Fraction(w), Fraction(v), Fraction(e)
    exact = abs(W + E * V) - abs(W - E * V)
    assert N.abs_diff(w, v, e) == pytest.approx(float(exact), rel=4e-16, abs=0.0)


# ------------------------------------------------------------------ loss deltas
def _problem(loss, output, nL, m, scale, seed):
    g = np.random.default_rng(seed)
    Z = g.standard_normal((nL, m)) * 2
    if output == "softmax":
        e = np.exp(Z - Z.max(0))
        G = e / e.sum(0)
        Y = np.eye(nL)[:, g.integers(0, nL, m)]
    elif output == "sigmoid":
        G = np.vectorize(_sig)(Z)
        Y = (g.random((nL, m)) < 0.5) * 1.0 if loss == "bce" else g.random((nL, m))
    else:
        G = Z.copy()
        Y = g.standard_normal((nL, m))
    D = g.standard_normal((nL, m)) * scale
    return Z, G, Y, D


def _sigmoid_series(s, d):  # log(1 + s expm1(d)) (bce / one softmax unit) to d^3; s(z + d) - s(z) likewise
    q = 1 - s
    return s * d + s * q * d * d / 2 + s * q * (q - s) * d ** 3 / 6


@pytest.mark.parametrize("scale", [1e-7, 1e-5])
def test_bce_loss_delta(scale):
    Z, G, Y, D = _problem("bce", "sigmoid", 3, 9, scale, 1)
    unit, col, block = N.loss_delta("bce", "sigmoid", Z, G, Y, D)
    ref = np.vectorize(_sigmoid_series)(G, D) - Y * D  # softplus(z + d) - softplus(z) - y d
    np.testing.assert_allclose(unit, ref, rtol=1e-13)
    np.testing.assert_allclose(col, ref.sum(0), rtol=1e-12)
    assert block == pytest.approx(ref.sum(), rel=1e-12)


@pytest.mark.parametrize("scale", [1e-7, 1e-5])
def test_ce_loss_delta(scale):
    Z, G, Y, D = _problem("ce", "softmax", 4, 11, scale, 2)
    unit, col, block = N.loss_delta("ce", "softmax", Z, G, Y, D)
    np.testing.assert_allclose(unit, np.vectorize(_sigmoid_series)(G, D) - Y * D, rtol=1e-13)
    # logsumexp(z + d) - logsumexp(z) - y.d: the cumulant series k1 + k2/2 + k3/6 of d under p
    k1 = (G * D).sum(0)
    k2 = (G * D * D).sum(0) - k1 ** 2
    k3 = (G * D ** 3).sum(0) - 3 * k1 * (G * D * D).sum(0) + 2 * k1 ** 3
    ref = k1 + k2 / 2 + k3 / 6 - (Y * D).sum(0)
    np.testing.assert_allclose(col, ref, rtol=1e-12, atol=1e-30)
    assert block == pytest.approx(ref.sum(), rel=1e-12)


def test_mse_linear_loss_delta_is_exact():
    Z, G, Y, D = _problem("mse", "linear", 2, 7, 1e-3, 3)
    unit, col, block = N.loss_delta("mse", "linear", Z, G, Y, D)
    exact = np.array([[float(Fraction(d) * (Fraction(a) - Fraction(y)) + Fraction(d) ** 2 / 2)
                       for d, a, y in zip(Dr, Gr, Yr)] for Dr, Gr, Yr in zip(D, G, Y)])
    np.testing.assert_allclose(unit, exact, rtol=1e-15)
    np.testing.assert_allclose(col, exact.sum(0), rtol=1e-14)
    assert block == pytest.approx(exact.sum(), rel=1e-14)


def test_mse_sigmoid_loss_delta():
    Z, G, Y, D = _problem("mse", "sigmoid", 2, 7, 1e-6, 4)
    unit, col, block = N.loss_delta("mse", "sigmoid", Z, G, Y, D)
    s, q = G, 1 - G  # s(z + d) - s(z) to d^3
    da = s * q * D + s * q * (q - s) * D * D / 2 + s * q * (1 - 6 * s * q) * D ** 3 / 6
    ref = da * (G - Y) + da * da / 2
    np.testing.assert_allclose(unit, ref, rtol=1e-12)
    np.testing.assert_allclose(col, ref.sum(0), rtol=1e-12)
