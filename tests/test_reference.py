"""dnnkit.reference, the NumPy oracle: checked against finite differences, hand-written course code,
closed forms and the course's published gradient-checking numbers."""
import zlib

import numpy as np
import pytest

from dnnkit import reference as ref
from dnnkit._params import params_to_vector, vector_to_params

from course import course_backward, course_case

HIDDEN = ["relu", "leaky_relu", "tanh", "sigmoid", "linear"]
PAIRS = [("sigmoid", "bce"), ("softmax", "ce"), ("linear", "mse"), ("sigmoid", "mse")]
BAD_PAIRS = [("softmax", "bce"), ("linear", "bce"), ("sigmoid", "ce"), ("linear", "ce"), ("softmax", "mse")]


# ----------------------------------------------------------------------------- helpers (independent of the code under test)

def make_params(dims, rng, away_from_zero=0.0):
    p = {}
    for l in range(1, len(dims)):
        W = rng.standard_normal((dims[l], dims[l - 1])) * np.sqrt(1.0 / dims[l - 1])
        p[f"W{l}"] = np.sign(W) * (np.abs(W) + away_from_zero)
        p[f"b{l}"] = 0.1 * rng.standard_normal((dims[l], 1))
    return p


def make_Y(loss, output, n_y, m, rng, soft=False):
    if loss == "bce":
        return rng.uniform(0.05, 0.95, (n_y, m)) if soft else (rng.random((n_y, m)) < 0.5).astype(float)
    if loss == "ce":
        if soft:
            return rng.dirichlet(np.ones(n_y), size=m).T
        return np.eye(n_y)[:, rng.integers(0, n_y, m)]
    if output == "sigmoid":  # mse on a sigmoid output: targets in [0, 1]
        return rng.uniform(0.0, 1.0, (n_y, m))
    return rng.standard_normal((n_y, m))


def make_masks(dims, m, keep, rng):
    """Explicit 0/1 masks for the input and every hidden layer (length L), at least one kept unit."""
    masks = []
    for n in dims[:-1]:
        D = (rng.random((n, m)) < keep).astype(float)
        D[0, 0] = 1.0
        masks.append(D)
    return masks


def numeric_grads(J, params, eps=1e-6):
    """Central differences of J(params) w.r.t. every entry, as a gradient dict."""
    out = {}
    for k, v in params.items():
        g = np.zeros_like(v)
        for idx in np.ndindex(v.shape):
            plus = {kk: vv.copy() for kk, vv in params.items()}
            minus = {kk: vv.copy() for kk, vv in params.items()}
            plus[k][idx] += eps
            minus[k][idx] -= eps
            g[idx] = (J(plus) - J(minus)) / (2 * eps)
        out["d" + k] = g
    return out


def rel_difference(a, b):
    a, b = params_to_vector(a, prefix="d"), params_to_vector(b, prefix="d")
    return np.linalg.norm(a - b) / (np.linalg.norm(a) + np.linalg.norm(b))


def assert_grads_match(grads, num, diff_tol=1e-7):
    assert set(grads) == set(num)
    assert rel_difference(grads, num) < diff_tol
    for k in num:
        np.testing.assert_allclose(grads[k], num[k], rtol=1e-5, atol=1e-8, err_msg=k)


# ----------------------------------------------------------------------------- gradients vs finite differences

REG_CASES = {
    "plain": dict(l2=0.0, l1=0.0, keep=None),
    "l2": dict(l2=0.7, l1=0.0, keep=None),
    "l1": dict(l2=0.0, l1=0.5, keep=None),
    "l2+l1+dropout": dict(l2=0.3, l1=0.2, keep=0.7),
}


@pytest.mark.parametrize("reg", list(REG_CASES), ids=list(REG_CASES))
@pytest.mark.parametrize("output, loss", PAIRS, ids=[f"{o}-{l}" for o, l in PAIRS])
@pytest.mark.parametrize("hidden", HIDDEN)
def test_gradients_match_finite_differences(hidden, output, loss, reg):
    case = REG_CASES[reg]
    rng = np.random.default_rng(zlib.crc32(f"{hidden}-{output}-{loss}-{reg}".encode()))
    n_y = 3 if output == "softmax" else 2
    dims, m = [4, 5, 3, n_y], 6
    L = len(dims) - 1
    params = make_params(dims, rng, away_from_zero=0.05 if case["l1"] else 0.0)
    X = rng.standard_normal((dims[0], m))
    Y = make_Y(loss, output, n_y, m, rng)
    keep_prob, masks = 1.0, None
    if case["keep"] is not None:
        keep_prob = [0.8] + [case["keep"]] * (L - 1)  # input dropout too
        masks = make_masks(dims, m, case["keep"], rng)
    kw = dict(hidden=hidden, output=output, loss=loss, l2=case["l2"], l1=case["l1"])

    J, grads = ref.cost_and_gradients(X, Y, params, keep_prob=keep_prob, masks=masks, **kw)

    def cost(p):
        return ref.cost_and_gradients(X, Y, p, keep_prob=keep_prob, masks=masks, **kw)[0]

    assert J == cost(params)
    assert_grads_match(grads, numeric_grads(cost, params))


@pytest.mark.parametrize(
    "dims, m",
    [([3, 1], 4), ([1, 1, 1], 1), ([2, 1, 5, 1], 3), ([3, 7, 1, 4, 2, 2], 2), ([5, 3, 2], 1)],
    ids=["no-hidden", "all-width-1-m-1", "width-1-hidden", "depth-5", "m-1"],
)
@pytest.mark.parametrize("output, loss", PAIRS, ids=[f"{o}-{l}" for o, l in PAIRS])
def test_gradients_awkward_shapes(dims, m, output, loss):
    rng = np.random.default_rng(len(dims) * 100 + m)
    dims = list(dims)
    if output == "softmax" and dims[-1] == 1:
        dims[-1] = 2
    params = make_params(dims, rng)
    X = rng.standard_normal((dims[0], m))
    Y = make_Y(loss, output, dims[-1], m, rng)
    kw = dict(hidden="tanh", output=output, loss=loss, l2=0.2)
    _, grads = ref.cost_and_gradients(X, Y, params, **kw)
    assert_grads_match(grads, numeric_grads(lambda p: ref.cost_and_gradients(X, Y, p, **kw)[0], params))


@pytest.mark.parametrize("output, loss", [("sigmoid", "bce"), ("softmax", "ce")], ids=["bce", "ce"])
def test_gradients_with_soft_labels(output, loss):
    rng = np.random.default_rng(3)
    dims, m = [3, 4, 3], 5
    params = make_params(dims, rng)
    X = rng.standard_normal((dims[0], m))
    Y = make_Y(loss, output, dims[-1], m, rng, soft=True)
    kw = dict(hidden="relu", output=output, loss=loss)
    _, grads = ref.cost_and_gradients(X, Y, params, **kw)
    assert_grads_match(grads, numeric_grads(lambda p: ref.cost_and_gradients(X, Y, p, **kw)[0], params))


def test_leaky_relu_alpha_is_used():
    rng = np.random.default_rng(0)
    params = make_params([3, 6, 1], rng)
    X = rng.standard_normal((3, 8))
    Y = (rng.random((1, 8)) < 0.5).astype(float)
    kw = dict(hidden="leaky_relu", alpha=0.2)
    _, grads = ref.cost_and_gradients(X, Y, params, **kw)
    assert_grads_match(grads, numeric_grads(lambda p: ref.cost_and_gradients(X, Y, p, **kw)[0], params))
    _, caches = ref.forward_propagation(X, params, "leaky_relu", alpha=0.2)
    Z1 = caches["Z1"]
    np.testing.assert_array_equal(caches["A1"], np.where(Z1 > 0, Z1, 0.2 * Z1))


@pytest.mark.parametrize("name", HIDDEN + ["softmax"])
def test_activation_backward_matches_finite_differences(name):
    rng = np.random.default_rng(1)
    Z = rng.standard_normal((4, 3))
    Z[np.abs(Z) < 1e-3] = 0.5  # away from the relu kink
    dA = rng.standard_normal((4, 3))
    f = lambda z: np.sum(dA * ref._activation(name, z))  # noqa: E731
    num = np.zeros_like(Z)
    for idx in np.ndindex(Z.shape):
        zp, zm = Z.copy(), Z.copy()
        zp[idx] += 1e-6
        zm[idx] -= 1e-6
        num[idx] = (f(zp) - f(zm)) / 2e-6
    np.testing.assert_allclose(ref.activation_backward(dA, Z, name), num, rtol=1e-6, atol=1e-9)


# ----------------------------------------------------------------------------- forward

def test_activations_closed_forms():
    Z = np.array([[-2.0, 0.0, 3.0]])
    np.testing.assert_allclose(ref.sigmoid(Z), 1 / (1 + np.exp(-Z)), rtol=1e-15)
    np.testing.assert_array_equal(ref.relu(Z), [[0.0, 0.0, 3.0]])
    np.testing.assert_allclose(ref.leaky_relu(Z), [[-0.02, 0.0, 3.0]], rtol=1e-15)
    np.testing.assert_array_equal(ref.tanh(Z), np.tanh(Z))
    np.testing.assert_array_equal(ref.linear(Z), Z)


def test_sigmoid_has_no_overflow_at_extremes():
    with np.errstate(over="raise", divide="raise", invalid="raise"):
        s = ref.sigmoid(np.array([-1000.0, 1000.0]))
    np.testing.assert_array_equal(s, [0.0, 1.0])


def test_softmax_columns_sum_to_one_even_for_huge_logits():
    rng = np.random.default_rng(0)
    Z = rng.standard_normal((5, 7)) * 10
    Z[:, 0] += 1000.0  # would overflow exp without the max shift
    S = ref.softmax(Z)
    assert np.all(np.isfinite(S)) and np.all(S >= 0)
    np.testing.assert_allclose(S.sum(axis=0), np.ones(7), rtol=0, atol=1e-14)
    E = np.exp(Z[:, 1:])
    np.testing.assert_allclose(S[:, 1:], E / E.sum(axis=0), rtol=1e-13)


def test_forward_caches_and_shapes():
    rng = np.random.default_rng(0)
    dims, m = [3, 4, 2, 1], 5
    params = make_params(dims, rng)
    X = rng.standard_normal((3, m))
    AL, caches = ref.forward_propagation(X, params, "tanh", "sigmoid")
    assert set(caches) == {"A0", "Z1", "A1", "Z2", "A2", "Z3", "A3"}
    assert caches["A0"] is X and AL is caches["A3"]
    A = X
    for l in range(1, 4):
        Z = params[f"W{l}"] @ A + params[f"b{l}"]
        A = np.tanh(Z) if l < 3 else 1 / (1 + np.exp(-Z))
        np.testing.assert_allclose(caches[f"Z{l}"], Z, rtol=1e-14)
        np.testing.assert_allclose(caches[f"A{l}"], A, rtol=1e-14)
        assert caches[f"A{l}"].shape == (dims[l], m)


def test_forward_with_explicit_masks_applies_inverted_dropout():
    rng = np.random.default_rng(5)
    dims, m = [3, 6, 4, 1], 7
    params = make_params(dims, rng)
    X = rng.standard_normal((3, m))
    masks = make_masks(dims, m, 0.6, rng)
    kp = [0.9, 0.6, 0.5]
    _, caches = ref.forward_propagation(X, params, "relu", "sigmoid", keep_prob=kp, masks=masks)
    assert set(k for k in caches if k.startswith("D")) == {"D0", "D1", "D2"}
    A = X * masks[0] / 0.9
    np.testing.assert_array_equal(caches["A0"], A)
    for l in (1, 2):
        A = np.maximum(0, params[f"W{l}"] @ A + params[f"b{l}"]) * masks[l] / kp[l]
        np.testing.assert_allclose(caches[f"A{l}"], A, rtol=1e-14)
    assert "D3" not in caches  # never on the output


def course_dropout_forward(X, params, keep_prob):
    """The course's forward_propagation_with_dropout (relu, relu, sigmoid), global np.random."""
    W1, b1, W2, b2, W3, b3 = (params[k] for k in ("W1", "b1", "W2", "b2", "W3", "b3"))
    Z1 = np.dot(W1, X) + b1
    A1 = np.maximum(0, Z1)
    D1 = np.random.rand(A1.shape[0], A1.shape[1])
    D1 = (D1 < keep_prob).astype(int)
    A1 = A1 * D1
    A1 = A1 / keep_prob
    Z2 = np.dot(W2, A1) + b2
    A2 = np.maximum(0, Z2)
    D2 = np.random.rand(A2.shape[0], A2.shape[1])
    D2 = (D2 < keep_prob).astype(int)
    A2 = A2 * D2
    A2 = A2 / keep_prob
    Z3 = np.dot(W3, A2) + b3
    A3 = 1 / (1 + np.exp(-Z3))
    return A3, D1, D2


@pytest.mark.parametrize("rng_kind", ["RandomState", "global-None"])
def test_drawn_masks_follow_the_course_code(rng_kind):
    gen = np.random.default_rng(9)
    params = make_params([3, 5, 4, 1], gen)
    X = gen.standard_normal((3, 10))
    np.random.seed(1)
    A3, D1, D2 = course_dropout_forward(X, params, 0.86)
    if rng_kind == "RandomState":
        rng = np.random.RandomState(1)
    else:
        np.random.seed(1)
        rng = None
    AL, caches = ref.forward_propagation(X, params, keep_prob=0.86, rng=rng)
    np.testing.assert_array_equal(caches["D1"], D1)
    np.testing.assert_array_equal(caches["D2"], D2)
    np.testing.assert_allclose(AL, A3, rtol=1e-14)


def test_drawn_masks_backward_equals_explicit_masks_backward():
    gen = np.random.default_rng(2)
    params = make_params([3, 5, 4, 1], gen)
    X = gen.standard_normal((3, 10))
    Y = (gen.random((1, 10)) < 0.5).astype(float)
    J1, g1 = ref.cost_and_gradients(X, Y, params, keep_prob=0.7, rng=np.random.default_rng(4))
    _, caches = ref.forward_propagation(X, params, keep_prob=0.7, rng=np.random.default_rng(4))
    J2, g2 = ref.cost_and_gradients(X, Y, params, keep_prob=0.7, masks=[caches["D1"], caches["D2"]])
    assert J1 == J2
    for k in g1:
        np.testing.assert_array_equal(g1[k], g2[k])
    Ds = np.concatenate([caches["D1"].ravel(), caches["D2"].ravel()])
    assert set(np.unique(Ds)) <= {0.0, 1.0} and 0.3 < Ds.mean() < 1.0


def test_int_rng_reproducible():
    gen = np.random.default_rng(2)
    params = make_params([3, 50, 1], gen)
    X = gen.standard_normal((3, 40))
    a = ref.forward_propagation(X, params, keep_prob=0.5, rng=7)[1]["D1"]
    b = ref.forward_propagation(X, params, keep_prob=0.5, rng=7)[1]["D1"]
    c = ref.forward_propagation(X, params, keep_prob=0.5, rng=8)[1]["D1"]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert abs(a.mean() - 0.5) < 0.05  # 2000 draws


# ----------------------------------------------------------------------------- keep_prob conventions

@pytest.mark.parametrize(
    "keep_prob, L, expected",
    [
        (0.8, 3, [1.0, 0.8, 0.8]),
        (1.0, 2, [1.0, 1.0]),
        (0.5, 1, [1.0]),
        ([0.7, 0.9], 3, [1.0, 0.7, 0.9]),
        ((0.6, 0.7, 0.9), 3, [0.6, 0.7, 0.9]),
        ([0.9], 1, [0.9]),
        ([], 1, [1.0]),
    ],
    ids=["float", "float-one", "float-no-hidden", "hidden-list", "with-input", "input-only", "empty-no-hidden"],
)
def test_normalize_keep_prob(keep_prob, L, expected):
    assert ref.normalize_keep_prob(keep_prob, L) == expected


@pytest.mark.parametrize(
    "keep_prob, L",
    [([0.5], 3), ([0.5] * 4, 3), (0.0, 3), (1.5, 2), (-0.1, 2), ([1.0, 0.0], 3), (float("nan"), 2)],
    ids=["too-short", "too-long", "zero", "above-one", "negative", "zero-in-list", "nan"],
)
def test_normalize_keep_prob_rejects(keep_prob, L):
    with pytest.raises(ValueError, match="keep_prob"):
        ref.normalize_keep_prob(keep_prob, L)


def test_masks_hidden_only_equals_masks_with_none_input():
    gen = np.random.default_rng(3)
    dims, m = [3, 5, 4, 1], 6
    params = make_params(dims, gen)
    X = gen.standard_normal((3, m))
    masks = make_masks(dims, m, 0.5, gen)[1:]
    a = ref.forward_propagation(X, params, keep_prob=0.5, masks=masks)[0]
    b = ref.forward_propagation(X, params, keep_prob=[1.0, 0.5, 0.5], masks=[None] + masks)[0]
    c = ref.forward_propagation(X, params, keep_prob=[0.5, 0.5], masks=masks)[0]
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(keep_prob=1.0, masks=[np.ones((5, 6)), np.eye(4, 6)]), "keep_prob is 1"),
        (dict(keep_prob=0.5, masks=[np.ones((5, 5)), np.ones((4, 6))]), "shape"),
        (dict(keep_prob=0.5, masks=[np.full((5, 6), 0.5), np.ones((4, 6))]), "only 0 and 1"),
        (dict(keep_prob=0.5, masks=[np.ones((5, 6))]), "masks needs"),
        (dict(hidden="gelu"), "hidden activation"),
        (dict(output="relu"), "output activation"),
        (dict(keep_prob=0.5, rng="seed"), None),
    ],
    ids=["mask-without-dropout", "mask-shape", "mask-not-binary", "masks-length", "bad-hidden", "bad-output",
         "bad-rng"],
)
def test_forward_rejects(kwargs, match):
    gen = np.random.default_rng(3)
    params = make_params([3, 5, 4, 1], gen)
    X = gen.standard_normal((3, 6))
    exc = TypeError if match is None else ValueError
    with pytest.raises(exc, match=match):
        ref.forward_propagation(X, params, **kwargs)


def test_backward_rejects_masks_with_keep_prob_one():
    gen = np.random.default_rng(3)
    params = make_params([3, 5, 1], gen)
    X = gen.standard_normal((3, 6))
    Y = np.ones((1, 6))
    _, caches = ref.forward_propagation(X, params, keep_prob=0.5, rng=1)
    with pytest.raises(ValueError, match="keep_prob"):
        ref.backward_propagation(X, Y, caches, params, keep_prob=1.0)


# ----------------------------------------------------------------------------- cost

def test_stable_cost_equals_course_cost_where_accurate():
    gen = np.random.default_rng(4)
    Z = gen.standard_normal((2, 9)) * 3
    Y = (gen.random((2, 9)) < 0.5).astype(float)
    A = 1 / (1 + np.exp(-Z))
    course = -1 / 9 * np.sum(Y * np.log(A) + (1 - Y) * np.log(1 - A))
    assert ref.compute_cost(A, Y, loss="bce") == pytest.approx(course, rel=1e-14)
    assert ref.compute_cost(A, Y, loss="bce", ZL=Z) == pytest.approx(course, rel=1e-12)

    Zs = gen.standard_normal((4, 9)) * 3
    Ys = np.eye(4)[:, gen.integers(0, 4, 9)]
    S = np.exp(Zs) / np.exp(Zs).sum(axis=0)
    course_ce = -1 / 9 * np.sum(Ys * np.log(S))
    assert ref.compute_cost(S, Ys, loss="ce") == pytest.approx(course_ce, rel=1e-14)
    assert ref.compute_cost(S, Ys, loss="ce", ZL=Zs) == pytest.approx(course_ce, rel=1e-12)


def test_stable_bce_finite_where_course_form_is_not():
    Z = np.array([[800.0, -800.0, 800.0]])
    Y = np.array([[0.0, 1.0, 1.0]])  # per-example losses: 800, 800, 0
    A = ref.sigmoid(Z)
    with np.errstate(divide="ignore", invalid="ignore"):
        course = ref.compute_cost(A, Y, loss="bce")
    assert not np.isfinite(course)
    assert ref.compute_cost(A, Y, loss="bce", ZL=Z) == pytest.approx(1600.0 / 3, rel=1e-15)


def test_stable_ce_finite_where_course_form_is_not():
    Z = np.array([[800.0, 0.0], [0.0, 0.0]])
    Y = np.array([[0.0, 1.0], [1.0, 0.0]])  # losses: 800, log 2
    S = ref.softmax(Z)
    with np.errstate(divide="ignore", invalid="ignore"):
        course = ref.compute_cost(S, Y, loss="ce")
    assert not np.isfinite(course)
    assert ref.compute_cost(S, Y, loss="ce", ZL=Z) == pytest.approx((800.0 + np.log(2)) / 2, rel=1e-15)


def test_mse_and_regularization_terms():
    gen = np.random.default_rng(6)
    params = make_params([3, 4, 2], gen)
    A = gen.standard_normal((2, 5))
    Y = gen.standard_normal((2, 5))
    base = ref.compute_cost(A, Y, loss="mse")
    assert base == pytest.approx(np.sum((A - Y) ** 2) / (2 * 5), rel=1e-14)
    sq = np.sum(params["W1"] ** 2) + np.sum(params["W2"] ** 2)
    ab = np.sum(np.abs(params["W1"])) + np.sum(np.abs(params["W2"]))
    J = ref.compute_cost(A, Y, params, loss="mse", l2=0.7, l1=0.3)
    assert J == pytest.approx(base + 0.7 / (2 * 5) * sq + 0.3 / (2 * 5) * ab, rel=1e-14)
    assert isinstance(J, float)


def test_course_one_dimensional_Y_accepted():
    A = np.array([[0.8, 0.6, 0.1]])
    assert ref.compute_cost(A, np.array([1, 1, 0])) == ref.compute_cost(A, np.array([[1, 1, 0]]))


@pytest.mark.parametrize("output, loss", BAD_PAIRS, ids=[f"{o}-{l}" for o, l in BAD_PAIRS])
def test_unsupported_output_loss_pair_raises(output, loss):
    gen = np.random.default_rng(0)
    params = make_params([2, 3, 2], gen)
    X = gen.standard_normal((2, 4))
    Y = np.eye(2)[:, [0, 1, 0, 1]]
    with pytest.raises(ValueError, match="not supported"):
        ref.cost_and_gradients(X, Y, params, output=output, loss=loss)
    _, caches = ref.forward_propagation(X, params, output=output)
    with pytest.raises(ValueError, match="not supported"):
        ref.backward_propagation(X, Y, caches, params, output=output, loss=loss)


@pytest.mark.parametrize(
    "call",
    [
        lambda X, Y, p: ref.compute_cost(Y, Y, loss="hinge"),
        lambda X, Y, p: ref.cost_and_gradients(X, Y, p, loss="nll"),
        lambda X, Y, p: ref.cost_and_gradients(X, Y, p, hidden="swish"),
        lambda X, Y, p: ref.activation_backward(Y, Y, "gelu"),
        lambda X, Y, p: ref.compute_cost(Y, Y, None, loss="bce", l2=0.1),
    ],
    ids=["cost-loss", "grads-loss", "grads-hidden", "act-backward", "l2-without-params"],
)
def test_unknown_names_raise(call):
    gen = np.random.default_rng(0)
    p = make_params([2, 3, 1], gen)
    X = gen.standard_normal((2, 4))
    Y = np.full((1, 4), 0.5)
    with pytest.raises(ValueError):
        call(X, Y, p)


# ----------------------------------------------------------------------------- gradient checking

def test_one_dimensional_check_from_the_course():
    x = 2.0
    difference, gradapprox = ref.gradient_check(lambda theta: float(theta[0] * x), np.array([4.0]),
                                                np.array([x]), epsilon=1e-7)
    assert 0 < difference < 1e-9
    assert gradapprox.shape == (1,)
    assert gradapprox[0] == pytest.approx(2.0, rel=1e-8)


def test_gradient_check_with_indices_and_wrong_gradient():
    gen = np.random.default_rng(0)
    A = gen.standard_normal((6, 6))
    A = A @ A.T
    theta = gen.standard_normal(6)
    cost = lambda t: 0.5 * float(t @ A @ t)  # noqa: E731
    grad = A @ theta
    d_all, approx = ref.gradient_check(cost, theta, grad, epsilon=1e-6)
    assert d_all < 1e-8 and approx.shape == (6,)
    d_sub, approx_sub = ref.gradient_check(cost, theta, grad, epsilon=1e-6, indices=[1, 4])
    assert d_sub < 1e-8
    np.testing.assert_allclose(approx_sub, grad[[1, 4]], rtol=1e-6)
    bad = grad.copy()
    bad[4] *= 2
    assert ref.gradient_check(cost, theta, bad, epsilon=1e-6, indices=[1, 2])[0] < 1e-8  # 4 not checked
    assert ref.gradient_check(cost, theta, bad, epsilon=1e-6, indices=[4])[0] == pytest.approx(1 / 3, rel=1e-6)


def test_course_gradient_check_correct_gradients():
    X, Y, params = course_case()
    _, grads = ref.cost_and_gradients(X, Y, params, "relu", "sigmoid", "bce")
    assert ref.gradient_check_n(params, grads, X, Y) < 1e-6


def test_course_gradient_check_planted_bugs():
    X, Y, params = course_case()
    _, caches = ref.forward_propagation(X, params, "relu", "sigmoid")
    grads = course_backward(X, Y, params)
    theta = params_to_vector(params)

    def course_cost(th):  # the course's cost, from A3 (not from the logits)
        p = vector_to_params(th, [4, 5, 3, 1])
        AL, _ = ref.forward_propagation(X, p, "relu", "sigmoid")
        return ref.compute_cost(AL, Y, loss="bce")

    difference, _ = ref.gradient_check(course_cost, theta, params_to_vector(grads, prefix="d"), epsilon=1e-7)
    assert difference == pytest.approx(0.28509315, abs=1e-6)
    assert ref.gradient_check_n(params, grads, X, Y) > 0.2  # the stable wrapper sees the bugs too


def test_gradient_check_n_prints_course_messages(capsys):
    X, Y, params = course_case()
    _, grads = ref.cost_and_gradients(X, Y, params)
    ref.gradient_check_n(params, grads, X, Y, print_msg=True)
    assert "works perfectly fine" in capsys.readouterr().out
    grads["db1"] = grads["db1"] * 4
    ref.gradient_check_n(params, grads, X, Y, print_msg=True)
    assert "There is a mistake" in capsys.readouterr().out


# ----------------------------------------------------------------------------- predict, update, model

def test_predict_shapes_and_rules():
    gen = np.random.default_rng(1)
    X = gen.standard_normal((3, 7))
    p1 = make_params([3, 4, 1], gen)
    AL, _ = ref.forward_propagation(X, p1)
    pred = ref.predict(X, p1)
    assert pred.shape == (1, 7) and pred.dtype.kind == "i"
    np.testing.assert_array_equal(pred, (AL > 0.5).astype(int))
    p3 = make_params([3, 4, 3], gen)
    AL3, _ = ref.forward_propagation(X, p3, output="softmax")
    np.testing.assert_array_equal(ref.predict(X, p3, output="softmax"), np.argmax(AL3, axis=0))
    AL_lin, _ = ref.forward_propagation(X, p3, output="linear")
    np.testing.assert_array_equal(ref.predict(X, p3, output="linear"), AL_lin)


def test_update_parameters_is_plain_gd_and_pure():
    gen = np.random.default_rng(1)
    p = make_params([3, 4, 1], gen)
    g = {"d" + k: gen.standard_normal(v.shape) for k, v in p.items()}
    before = {k: v.copy() for k, v in p.items()}
    new = ref.update_parameters(p, g, 0.1)
    for k in p:
        np.testing.assert_array_equal(p[k], before[k])
        np.testing.assert_array_equal(new[k], before[k] - 0.1 * g["d" + k])


def _one_weight(w, g):
    return {"W1": np.array([[w]]), "b1": np.array([[0.0]])}, {"dW1": np.array([[g]]), "db1": np.array([[0.0]])}


def test_momentum_step_by_hand():
    p, g = _one_weight(1.0, 0.5)
    v = ref.initialize_velocity(p)
    assert set(v) == {"dW1", "db1"} and all(np.all(a == 0) for a in v.values())
    p1, v1 = ref.update_parameters_with_momentum(p, g, v, beta=0.9, learning_rate=0.1)
    assert v1["dW1"][0, 0] == pytest.approx(0.05) and p1["W1"][0, 0] == pytest.approx(0.995)
    p2, v2 = ref.update_parameters_with_momentum(p1, g, v1, beta=0.9, learning_rate=0.1)
    assert v2["dW1"][0, 0] == pytest.approx(0.095) and p2["W1"][0, 0] == pytest.approx(0.9855)
    assert p["W1"][0, 0] == 1.0 and v["dW1"][0, 0] == 0.0  # pure: the inputs are not modified


def test_adam_step_by_hand():
    # a constant gradient: the bias-corrected moments are g and g^2 at every t, so each step moves lr
    p, g = _one_weight(1.0, 0.5)
    v, s = ref.initialize_adam(p)
    p1, v1, s1 = ref.update_parameters_with_adam(p, g, v, s, 1, learning_rate=0.1)
    assert v1["dW1"][0, 0] == pytest.approx(0.05) and s1["dW1"][0, 0] == pytest.approx(0.00025)
    assert p1["W1"][0, 0] == pytest.approx(0.9, rel=1e-12, abs=1e-8)
    p2, v2, s2 = ref.update_parameters_with_adam(p1, g, v1, s1, 2, learning_rate=0.1)
    assert v2["dW1"][0, 0] == pytest.approx(0.095) and s2["dW1"][0, 0] == pytest.approx(0.00049975)
    assert p2["W1"][0, 0] == pytest.approx(0.8, abs=1e-8)
    assert p["W1"][0, 0] == 1.0 and v["dW1"][0, 0] == 0.0 and s["dW1"][0, 0] == 0.0


def test_predict_of_sigmoid_mse_is_the_output():
    # the loss decides the task: bce classifies, mse (linear or sigmoid output) regresses
    gen = np.random.default_rng(2)
    X = gen.standard_normal((3, 5))
    p = make_params([3, 4, 1], gen)
    AL, _ = ref.forward_propagation(X, p)
    np.testing.assert_array_equal(ref.predict(X, p, loss="mse"), AL)
    np.testing.assert_array_equal(ref.predict(X, p, loss="bce"), (AL > 0.5).astype(int))


def test_model_learns_and_is_reproducible():
    gen = np.random.default_rng(0)
    X = gen.standard_normal((2, 200))
    Y = (np.sum(X ** 2, axis=0, keepdims=True) > 1.4).astype(float)  # circles
    kw = dict(learning_rate=0.5, num_iterations=300, l2=0.1, keep_prob=0.9, rng=3, return_costs=True)
    p1, costs = ref.model(X, Y, [2, 8, 4, 1], **kw)
    p2, costs2 = ref.model(X, Y, [2, 8, 4, 1], **kw)
    assert costs == costs2
    assert len(costs) == 300 and costs[-1] < 0.5 * costs[0]
    assert np.mean(ref.predict(X, p1) == Y) > 0.9


def test_reexports():
    from dnnkit.init import initialize_parameters
    from dnnkit import _params

    assert ref.initialize_parameters is initialize_parameters
    assert ref.params_to_vector is _params.params_to_vector
    assert ref.vector_to_params is _params.vector_to_params
