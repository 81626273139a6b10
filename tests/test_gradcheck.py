"""dk.gradcheck: numbers against the NumPy reference (dnnkit.reference) and the course, named patterns on
planted bugs, kinks, dropout, modes, threads, split checks. Oracles are never numbers produced by the code
under test."""
import numpy as np
import pytest

import dnnkit as dk
from dnnkit import reference as ref
from dnnkit._params import params_to_vector, vector_to_params

from course import course_backward, course_case


# ----------------------------------------------------------------------------- helpers

def make_params(dims, rng, scale=1.0):
    p = {}
    for l in range(1, len(dims)):
        p[f"W{l}"] = rng.standard_normal((dims[l], dims[l - 1])) * np.sqrt(scale / dims[l - 1])
        p[f"b{l}"] = 0.1 * rng.standard_normal((dims[l], 1))
    return p


def make_Y(loss, output, n_y, m, rng):
    if loss == "bce":
        return (rng.random((n_y, m)) < 0.5).astype(float)
    if loss == "ce":
        return np.eye(n_y)[:, rng.integers(0, n_y, m)]
    if output == "sigmoid":
        return rng.uniform(0.0, 1.0, (n_y, m))
    return rng.standard_normal((n_y, m))


def ref_grads(net, X, Y, l2=0.0, l1=0.0, keep_prob=1.0, masks=None):
    """Gradients from dnnkit.reference (the oracle), as a dict."""
    p = net.get_params()
    _, g = ref.cost_and_gradients(X, Y, p, net.hidden, net.output, net.loss, l2, l1, keep_prob, masks,
                                  net.alpha)
    return g


def ref_loop(net, X, Y, l2=0.0, l1=0.0, keep_prob=1.0, masks=None, eps=1e-6, indices=None):
    """The seeds' straight loop (dnnkit.reference) on net's cost: (reference gradient vector, gradapprox)."""
    dims, L = list(net.layer_dims), net.L
    theta = params_to_vector(net.get_params()).astype(np.float64)

    def J(th):
        q = vector_to_params(th, dims)
        AL, c = ref.forward_propagation(X, q, net.hidden, net.output, keep_prob=keep_prob, masks=masks,
                                        alpha=net.alpha)
        return ref.compute_cost(AL, Y, q, net.loss, l2, l1, ZL=c[f"Z{L}"])

    g = params_to_vector(ref_grads(net, X, Y, l2, l1, keep_prob, masks), prefix="d")
    return g, ref.gradient_check(J, theta, g, eps, indices=indices)[1]


def course_cost(X, Y, stable):
    def J(p):
        AL, c = ref.forward_propagation(X, p, "relu", "sigmoid")
        return ref.compute_cost(AL, Y, p, "bce", ZL=c["Z3"] if stable else None)
    return J


def comp(report, name):
    return next(c for c in report.components if c.name == name)


# ----------------------------------------------------------------------------- the seeds' numbers

def test_one_dimensional():
    x = 2.0
    r = dk.gradcheck(lambda th: float(th[0] * x), np.array([4.0]), np.array([x]), eps=1e-7)
    assert 1e-10 < float(r) < 1e-9  # the course prints 2.919335883291695e-10
    assert r.verdict == "correct"


@pytest.mark.parametrize("stable", [False, True], ids=["course-cost", "stable-cost"])
def test_course_case_generic(stable):
    X, Y, p = course_case()
    r = dk.gradcheck(course_cost(X, Y, stable), p, course_backward(X, Y, p), eps=1e-7)
    assert float(r) == pytest.approx(0.28509315, abs=1e-6)
    assert r.verdict == "bug"
    worst = sorted(r.components, key=lambda c: -c.difference)[:2]
    assert {c.name for c in worst} == {"W2", "b1"}
    assert comp(r, "W2").difference == pytest.approx(1 / 3, abs=1e-3)
    assert comp(r, "b1").difference == pytest.approx(0.6, abs=1e-3)
    assert "x2" in comp(r, "W2").finding
    assert "x4" in comp(r, "b1").finding
    for name in ("W1", "b2", "W3", "b3"):
        assert comp(r, name).difference < 1e-6
    fixed = dk.gradcheck(course_cost(X, Y, stable), p, course_backward(X, Y, p, bugs=False), eps=1e-7)
    assert float(fixed) < 2e-7
    assert fixed.verdict == "correct"


def test_course_case_native():
    X, Y, p = course_case()
    net = dk.Network([4, 5, 3, 1], hidden="relu", output="sigmoid", params=p)
    r = dk.gradcheck(net, X, Y, grads=course_backward(X, Y, p))
    assert float(r) == pytest.approx(0.28509315, abs=1e-6)
    assert r.verdict == "bug"
    assert "x2" in comp(r, "W2").finding and "x4" in comp(r, "b1").finding
    assert comp(r, "W2").worst_index[0] == 2 and comp(r, "b1").worst_index[0] == 1
    fixed = dk.gradcheck(net, X, Y, grads=course_backward(X, Y, p, bugs=False))
    # the stable, cancellation-free engine: far below the straight loop's ~1e-9
    assert float(fixed) < 1e-10
    assert fixed.verdict == "correct"
    assert dk.gradcheck(net, X, Y).verdict == "correct"  # net.backward


# ----------------------------------------------------------------------------- native engine == reference loop

CASES = [
    # dims, hidden, output, loss, l2, l1, keep
    ([3, 4, 1], "relu", "sigmoid", "bce", 0.0, 0.0, 1.0),
    ([5, 7, 6, 3], "tanh", "softmax", "ce", 0.7, 0.0, 1.0),
    ([4, 6, 5, 4, 2], "leaky_relu", "sigmoid", "mse", 0.3, 0.2, 1.0),
    ([2, 3, 2], "sigmoid", "linear", "mse", 0.0, 0.5, 1.0),
    ([6, 1, 5, 3], "linear", "softmax", "ce", 0.1, 0.1, 1.0),
    ([4, 8, 8, 1], "relu", "sigmoid", "bce", 0.7, 0.0, 0.8),
    ([4, 8, 6, 3], "tanh", "softmax", "ce", 0.0, 0.3, [0.9, 0.7, 0.8]),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[1]}-{c[2]}-{c[3]}-L{len(c[0]) - 1}-kp{c[6]}")
@pytest.mark.parametrize("m", [1, 9])
def test_native_equals_reference_loop(case, m):
    dims, hidden, output, loss, l2, l1, keep = case
    rng = np.random.default_rng(len(dims) * 100 + m)
    p = make_params(dims, rng)
    X = rng.standard_normal((dims[0], m))
    Y = make_Y(loss, output, dims[-1], m, rng)
    L = len(dims) - 1
    kp = ref.normalize_keep_prob(keep, L)
    masks = [None if k == 1.0 else (rng.random((dims[l], m)) < k).astype(float) for l, k in enumerate(kp)]
    net = dk.Network(dims, hidden=hidden, output=output, loss=loss, params=p)
    theta = params_to_vector(p)
    g, approx_ref = ref_loop(net, X, Y, l2, l1, kp, masks)
    r = dk.gradcheck(net, X, Y, l2=l2, l1=l1, keep_prob=kp, masks=masks, eps=1e-6)
    assert r.n_checked == theta.size
    np.testing.assert_allclose(r.approx, approx_ref, rtol=1e-6, atol=1e-8 * max(1.0, np.abs(g).max()))
    np.testing.assert_allclose(r.grad, g, rtol=1e-12, atol=1e-14)  # net.backward checked against the oracle
    assert r.verdict == "correct", str(r)


def test_stable_engine_is_more_exact_than_the_loop():
    """On a correct gradient the delta engine scores orders of magnitude below the straight loop."""
    rng = np.random.default_rng(5)
    dims = [6, 8, 5, 3]
    net = dk.Network(dims, hidden="tanh", output="softmax", params=make_params(dims, rng))
    X = rng.standard_normal((6, 20))
    Y = make_Y("ce", "softmax", 3, 20, rng)
    r = dk.gradcheck(net, X, Y, grads=ref_grads(net, X, Y))
    assert float(r) < 1e-11


# ----------------------------------------------------------------------------- named patterns

@pytest.fixture(scope="module")
def small():
    rng = np.random.default_rng(11)
    dims = [5, 6, 4, 3]
    p = make_params(dims, rng)
    X = rng.standard_normal((5, 12))
    Y = make_Y("ce", "softmax", 3, 12, rng)
    net = dk.Network(dims, hidden="tanh", output="softmax", params=p)
    return net, X, Y


def _planted(small, l2=0.0, l1=0.0, **kw):
    net, X, Y = small
    g = ref_grads(net, X, Y, l2, l1)
    return net, X, Y, g


@pytest.mark.parametrize("factor,needle", [(-1.0, "sign flipped"), (2.0, "x2"), (0.5, "x1/2"), (12.0, "x m"),
                                           (1 / 12, "x 1/m"), (4.0, "x4"), (1.37, "x1.37")],
                         ids=["neg", "x2", "half", "xm", "x1/m", "x4", "other"])
def test_scaled_gradient_named(small, factor, needle):
    net, X, Y, g = _planted(small)
    g["dW2"] = g["dW2"] * factor
    r = dk.gradcheck(net, X, Y, grads=g)
    assert r.verdict == "bug"
    c = comp(r, "W2")
    # the residual pattern stays in .pattern when a hypothesis names the mistake (x m: "1/m only in db2")
    assert needle in (c.pattern or c.finding), c.finding
    assert c.mistake == ("m_only_db" if needle == "x m" else None), c.finding
    assert all(comp(r, n).finding == "ok" for n in ("W1", "b1", "b2", "W3", "b3"))


def test_l2_missing(small):
    net, X, Y, g = _planted(small)  # gradients WITHOUT the L2 term ...
    r = dk.gradcheck(net, X, Y, grads=g, l2=0.7)  # ... checked against J WITH it
    assert r.verdict == "bug"
    for l in (1, 2, 3):
        assert "L2 term missing from dW%d" % l in comp(r, f"W{l}").pattern
        assert comp(r, f"W{l}").mistake == "l2_missing" and "add (lambd/m) * W%d" % l in comp(r, f"W{l}").finding
        assert comp(r, f"b{l}").finding == "ok"


def test_l2_wrongly_scaled(small):
    net, X, Y, g = _planted(small, l2=0.7)
    g["dW1"] = g["dW1"] + 0.7 / 12 * net.params["W1"]  # L2 term added twice
    r = dk.gradcheck(net, X, Y, grads=g, l2=0.7)
    assert "L2 term of dW1 scaled by 2" in comp(r, "W1").finding


def test_l1_missing(small):
    net, X, Y, g = _planted(small)
    r = dk.gradcheck(net, X, Y, grads=g, l1=0.5)
    assert "L1 term missing from dW2" in comp(r, "W2").pattern
    assert comp(r, "W2").mistake == "l1_missing" and "np.sign(W2)" in comp(r, "W2").finding


@pytest.mark.parametrize("fill", [0.0, np.nan], ids=["zero", "nan"])
def test_block_never_written(small, fill):
    net, X, Y, g = _planted(small)
    g["db2"] = np.full_like(g["db2"], fill)
    r = dk.gradcheck(net, X, Y, grads=g)
    assert r.verdict == "bug"
    f = comp(r, "b2").finding
    assert ("zero" in f) if fill == 0.0 else ("NaN" in f)


def test_transposed(small):
    net, X, Y, g = _planted(small)
    g["dW2"] = np.ascontiguousarray(g["dW2"].T)  # (6, 4) instead of (4, 6)
    r = dk.gradcheck(net, X, Y, grads=g)
    assert "transposed" in comp(r, "W2").pattern and comp(r, "W2").mistake == "dW_transposed"


def test_rows_and_worst_index(small):
    net, X, Y, g = _planted(small)
    g["dW1"] = g["dW1"].copy()
    g["dW1"][3, :] += 0.05  # one unit's row is wrong
    g["dW1"][3, 2] += 1.0   # and one element is badly wrong
    r = dk.gradcheck(net, X, Y, grads=g)
    c = comp(r, "W1")
    assert c.worst_index == (1, 3, 2)
    assert "rows" in c.finding and "[3" in c.finding


def test_zero_row(small):
    net, X, Y, g = _planted(small)
    g["dW3"] = g["dW3"].copy()
    g["dW3"][1, :] = 0.0
    r = dk.gradcheck(net, X, Y, grads=g)
    assert "rows [1] are zero" in comp(r, "W3").finding


# ----------------------------------------------------------------------------- kinks

def test_relu_kinks_flagged_not_reported():
    """Many pre-activations within +-eps of 0: the coordinates crossing a kink are flagged and verified one-sided
    where an example's loss crosses none on one side; those crossing on both sides (layer-2 units 1e-9 from their
    kinks, moved both ways by one W1 coordinate) stay unverified, so the verdict is "unverified" — no false alarm,
    and never "correct" about what was not verified."""
    rng = np.random.default_rng(3)
    dims, m = [4, 10, 6, 1], 8
    p = make_params(dims, rng)
    X = rng.standard_normal((4, m))
    Y = make_Y("bce", "sigmoid", 1, m, rng)
    A1 = np.maximum(0, p["W1"] @ X + p["b1"])
    # put every unit of layer 1 exactly at its kink for example 0, and layer 2's units 1e-9 from theirs
    p["b1"] = -(p["W1"] @ X[:, :1])
    A1 = np.maximum(0, p["W1"] @ X + p["b1"])
    p["b2"] = -(p["W2"] @ A1[:, 1:2]) + 1e-9
    net = dk.Network(dims, hidden="relu", output="sigmoid", params=p)
    r = dk.gradcheck(net, X, Y, eps=1e-6)
    assert r.n_kinks > 10
    assert sum(c.n_kinks for c in r.components) == r.n_kinks
    assert r.verdict == "unverified", str(r)
    assert float(r) < 2e-7 and r.n_one_sided > 10 and 0 < r.n_unverified < r.n_kinks
    assert r.n_verified + r.n_unverified == r.n_checked
    assert sum(c.n_one_sided for c in r.components) == r.n_one_sided
    assert "UNVERIFIED" in str(r) and "one-sided" in str(r) and "both sides" in r.unverified_reason
    # the flagged coordinates really are unreliable: the reference loop disagrees with the gradient there
    kinked = r.indices[r.flags != 0]
    g, a = ref_loop(net, X, Y, indices=kinked)
    assert np.max(np.abs(a - g[kinked])) > 1e-3


def test_l1_kink_flagged():
    rng = np.random.default_rng(4)
    dims = [3, 4, 1]
    p = make_params(dims, rng)
    p["W1"][0, 0] = 1e-9
    net = dk.Network(dims, params=p)
    X = rng.standard_normal((3, 5))
    Y = make_Y("bce", "sigmoid", 1, 5, rng)
    r = dk.gradcheck(net, X, Y, l1=0.5, eps=1e-7)
    assert r.flags[0] == 2 and r.n_kinks == 1
    assert r.verdict == "correct"


# ----------------------------------------------------------------------------- dropout

def test_dropout_with_seed_passes_and_without_seed_refused():
    rng = np.random.default_rng(8)
    dims = [5, 12, 8, 1]
    net = dk.Network(dims, hidden="relu", output="sigmoid", params=make_params(dims, rng))
    X = rng.standard_normal((5, 16))
    Y = make_Y("bce", "sigmoid", 1, 16, rng)
    r = dk.gradcheck(net, X, Y, l2=0.3, keep_prob=0.7, seed=42)
    assert r.verdict == "correct", str(r)
    # oracle: the reference's gradient on the masks the seed draws
    masks = [None] + [dk.dropout_mask((dims[l], 16), 0.7, 42, 0, l) for l in (1, 2)]
    g = params_to_vector(ref_grads(net, X, Y, 0.3, 0.0, [1.0, 0.7, 0.7], masks), prefix="d")
    np.testing.assert_allclose(r.grad, g, rtol=1e-10, atol=1e-13)
    assert float(dk.gradcheck(net, X, Y, grads=g, l2=0.3, keep_prob=0.7, seed=42)) < 1e-9
    with pytest.raises(ValueError, match="seed"):
        dk.gradcheck(net, X, Y, keep_prob=0.7)
    # gradients of a different mask are caught
    r2 = dk.gradcheck(net, X, Y, grads=g, l2=0.3, keep_prob=0.7, seed=43)
    assert r2.verdict != "correct"


# ----------------------------------------------------------------------------- modes

def test_sample_mode_catches_planted_bug(small):
    net, X, Y, g = _planted(small)
    g["db3"] = g["db3"] * 2
    r = dk.gradcheck(net, X, Y, grads=g, mode="sample", k=4, rng=1)
    assert r.n_checked == 4 + 4 + 4 + 4 + 4 + 3
    assert r.verdict == "bug" and "x2" in comp(r, "b3").finding
    r2 = dk.gradcheck(net, X, Y, grads=g, mode="sample", k=4, rng=1)
    np.testing.assert_array_equal(r.indices, r2.indices)  # seeded
    ok = dk.gradcheck(net, X, Y, mode="sample", k=4, rng=1)
    assert ok.verdict == "correct"


@pytest.mark.parametrize("bug", ["x2", "neg", "zero", "l2"])
def test_directional_mode_catches_planted_bug(small, bug):
    net, X, Y, g = _planted(small)
    l2 = 0.0
    if bug == "x2":
        g["dW1"] = g["dW1"] * 2
    elif bug == "neg":
        g["dW1"] = -g["dW1"]
    elif bug == "zero":
        g["dW1"] = np.zeros_like(g["dW1"])
    else:
        l2 = 0.7
    r = dk.gradcheck(net, X, Y, grads=g, l2=l2, mode="directional", n_directions=2, rng=0)
    assert r.verdict == "bug"
    assert comp(r, "W1").verdict == "bug"
    if bug != "l2":
        assert all(comp(r, n).verdict == "correct" for n in ("b1", "W2", "b2", "W3", "b3"))
    if bug == "x2":
        assert "x2" in comp(r, "W1").finding
    ok = dk.gradcheck(net, X, Y, mode="directional", rng=0)
    assert ok.verdict == "correct" and float(ok) < 1e-10


def test_directional_equals_reference_along_direction(small):
    net, X, Y, g = _planted(small)
    d = np.random.default_rng(0).standard_normal(net.n_params)
    d /= np.linalg.norm(d)
    theta = net.theta.copy()
    L = 3

    def J(t):
        q = vector_to_params(theta + t[0] * d, list(net.layer_dims))
        AL, c = ref.forward_propagation(X, q, "tanh", "softmax")
        return ref.compute_cost(AL, Y, q, "ce", 0.2, 0.1, ZL=c[f"Z{L}"])
    _, a_ref = ref.gradient_check(J, np.zeros(1), np.zeros(1), 1e-6)
    from dnnkit import _core
    prob = _core.GradcheckProblem(list(net.layer_dims), "tanh", "softmax", "ce", 0.01, theta, X, Y, [], 0, 0, [], 0.2,
                                  0.1)
    a, _, _ = _core.gradcheck_directions(prob, 1e-6, d[None, :])
    np.testing.assert_allclose(a, a_ref, rtol=1e-6)


# ----------------------------------------------------------------------------- threads, splits, API

def test_identical_for_any_thread_count():
    rng = np.random.default_rng(9)
    dims = [30, 20, 12, 4]
    net = dk.Network(dims, hidden="relu", output="softmax", params=make_params(dims, rng))
    X = rng.standard_normal((30, 70))
    Y = make_Y("ce", "softmax", 4, 70, rng)
    before = dk.get_num_threads()
    try:
        out = []
        for t in (1, 2, 7):
            dk.set_num_threads(t)
            r = dk.gradcheck(net, X, Y, l2=0.1, keep_prob=0.8, seed=3)
            d = dk.gradcheck(net, X, Y, l2=0.1, keep_prob=0.8, seed=3, mode="directional", n_directions=3)
            out.append((r.approx.copy(), r.flags.copy(), d.approx.copy()))
    finally:
        dk.set_num_threads(0 if before == 0 else before)
    for a, f, d in out[1:]:
        np.testing.assert_array_equal(a, out[0][0])
        np.testing.assert_array_equal(f, out[0][1])
        np.testing.assert_array_equal(d, out[0][2])


def test_split_check_merged_equals_full(small):
    net, X, Y, g = _planted(small)
    g["dW2"] = g["dW2"] * 2
    full = dk.gradcheck(net, X, Y, grads=g)
    n = net.n_params
    parts = [dk.gradcheck(net, X, Y, grads=g, indices=range(0, 20)),
             dk.gradcheck(net, X, Y, grads=g, indices=slice(20, 50)),
             dk.gradcheck(net, X, Y, grads=g, indices=np.arange(50, n))]
    merged = dk.GradcheckReport.merge(parts)
    np.testing.assert_array_equal(merged.approx, full.approx)
    assert float(merged) == float(full)
    assert merged.to_dict()["components"] == full.to_dict()["components"]
    assert float(parts[0].merge(parts[1], parts[2])) == float(full)
    with pytest.raises(ValueError, match="overlap"):
        dk.GradcheckReport.merge([parts[0], parts[0]])


def test_report_api(small, tmp_path):
    net, X, Y, g = _planted(small)
    g["dW2"] = g["dW2"] * 2
    r = dk.gradcheck(net, X, Y, grads=g)
    d = r.to_dict()
    assert d["verdict"] == "bug" and len(d["components"]) == 6
    assert d["difference"] == float(r)
    text = str(r)
    assert "W2" in text and "x2" in text and "BUG" in text
    assert not bool(r)
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    ax = r.plot()
    assert len(ax.patches) == 6
    ax.figure.savefig(tmp_path / "gc.png")
    import matplotlib.pyplot as plt
    plt.close("all")


def test_assert_gradients_close(small):
    net, X, Y, g = _planted(small)
    dk.assert_gradients_close(net, X, Y, grads=g)
    g["db1"] = g["db1"] * -1
    with pytest.raises(AssertionError, match="sign flipped"):
        dk.assert_gradients_close(net, X, Y, grads=g)


def test_generic_mode_flat_and_dict():
    rng = np.random.default_rng(2)
    A = rng.standard_normal((4, 4))
    A = A @ A.T

    def J(th):
        return float(0.5 * th @ A @ th)
    th = rng.standard_normal(4)
    assert dk.gradcheck(J, th, A @ th).verdict == "correct"
    assert dk.gradcheck(J, th, 2 * A @ th).verdict == "bug"
    r = dk.gradcheck(lambda p: float(np.sum(p["W"] ** 2) + np.sum(p["b"])), {"W": np.ones((2, 3)), "b": np.zeros(2)},
                     {"dW": 2 * np.ones((2, 3)), "db": np.zeros(2)})
    assert comp(r, "W").finding == "ok" and "zero" in comp(r, "b").finding


def test_float32_network_checked_in_float64():
    rng = np.random.default_rng(6)
    dims = [4, 5, 1]
    p = make_params(dims, rng)
    net = dk.Network(dims, dtype="float32", params=p)
    X = rng.standard_normal((4, 6))
    Y = make_Y("bce", "sigmoid", 1, 6, rng)
    assert dk.gradcheck(net, X, Y).verdict == "correct"


def test_bad_inputs(small):
    net, X, Y, g = _planted(small)
    with pytest.raises(ValueError, match="mode"):
        dk.gradcheck(net, X, Y, mode="fast")
    with pytest.raises(ValueError, match="eps"):
        dk.gradcheck(net, X, Y, eps=0)
    with pytest.raises(IndexError):
        dk.gradcheck(net, X, Y, indices=[net.n_params])
    with pytest.raises(TypeError):
        dk.gradcheck("net", X, Y)
    with pytest.raises(ValueError, match="entries"):
        dk.gradcheck(net, X, Y, grads=np.zeros(3))


def test_check_leaves_the_network_as_it_was(small):
    # gradcheck(net, X, Y) ran net.backward on the user's network: it overwrote the grads the user held
    # (views of net's buffer) and last_cost
    net, X, Y = small
    mine = net.backward(X, Y)
    held = net.grad_vector.copy()
    cost0 = net.last_cost
    theta0 = net.theta.copy()
    assert dk.gradcheck(net, X[:, :5], Y[:, :5], l2=0.7).verdict == "correct"
    assert net.grad_vector.tobytes() == held.tobytes() and mine["dW1"].ravel()[0] == held[0]
    assert net.last_cost == cost0 and net.theta.tobytes() == theta0.tobytes()


def test_non_real_gradients_and_costs_are_rejected_clearly(small):
    net, X, Y, g = _planted(small)
    flat = params_to_vector(g, prefix="d")
    with pytest.raises(TypeError, match="real"):  # was a ComplexWarning and the imaginary part dropped
        dk.gradcheck(net, X, Y, grads=flat.astype(complex))
    with pytest.raises(TypeError, match="real"):
        dk.gradcheck(net, X, Y, grads=dict(g, dW1=g["dW1"].astype(str)))
    p = {"W": np.ones((2, 2))}
    gp = {"dW": 2 * np.ones((2, 2))}
    with pytest.raises(TypeError, match="cost_fn must return a real number"):
        dk.gradcheck(lambda q: q["W"] ** 2, p, gp)  # an array, not J
    with pytest.raises(TypeError, match="cost_fn must return a real number"):
        dk.gradcheck(lambda q: "1.0", p, gp)  # float("1.0") used to accept a string
    with pytest.raises(TypeError, match="real"):
        dk.gradcheck(lambda q: 0.0, {"W": np.ones(2, dtype=complex)}, {"dW": np.zeros(2)})
    with pytest.raises(ValueError, match="empty"):
        dk.gradcheck(lambda q: 0.0, {}, {})
    # a 0-d / size-1 array is a number
    assert dk.gradcheck(lambda q: np.sum(q["W"] ** 2, keepdims=True), p, gp).verdict == "correct"


# ----------------------------------------------------------------------------- PyTorch

def test_torch_gradients_pass():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(12)
    dims, m = [6, 9, 7, 4], 11
    p = make_params(dims, rng)
    X = rng.standard_normal((6, m))
    Y = make_Y("ce", "softmax", 4, m, rng)
    tp = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in p.items()}
    A = torch.tensor(X)
    for l in (1, 2, 3):
        Z = tp[f"W{l}"] @ A + tp[f"b{l}"]
        A = torch.relu(Z) if l < 3 else Z
    J = torch.nn.functional.cross_entropy(A.T, torch.tensor(Y.argmax(0))) + \
        0.3 / (2 * m) * sum((tp[f"W{l}"] ** 2).sum() for l in (1, 2, 3))
    J.backward()
    g = {"d" + k: v.grad.numpy() for k, v in tp.items()}
    net = dk.Network(dims, hidden="relu", output="softmax", params=p)
    r = dk.gradcheck(net, X, Y, grads=g, l2=0.3)
    assert r.verdict == "correct" and float(r) < 1e-12
    g["dW3"] = g["dW3"] * m
    assert "x m" in comp(dk.gradcheck(net, X, Y, grads=g, l2=0.3), "W3").finding


# ----------------------------------------------------------------------------- the linear-region fast path

FAST_CASES = [
    # dims, hidden, output, loss, l2, l1, keep
    ([5, 7, 6, 3], "relu", "softmax", "ce", 0.0, 0.0, 1.0),
    ([5, 7, 6, 3], "relu", "softmax", "ce", 0.4, 0.3, [1.0, 0.7, 0.8]),
    ([4, 9, 1], "relu", "sigmoid", "bce", 0.7, 0.0, 1.0),
    ([4, 8, 6, 5, 2], "relu", "sigmoid", "bce", 0.0, 0.2, 0.75),     # L = 4: margins through two hidden layers
    ([5, 7, 6, 5, 3], "leaky_relu", "softmax", "ce", 0.3, 0.0, [0.9, 0.8, 0.7, 0.9]),
    ([4, 6, 5, 2], "leaky_relu", "linear", "mse", 0.2, 0.1, 1.0),
    ([4, 6, 5, 2], "leaky_relu", "sigmoid", "mse", 0.0, 0.0, 0.8),  # mse through a sigmoid: scalar loss forms
    ([6, 5, 4, 3], "linear", "softmax", "ce", 0.1, 0.1, [0.8, 1.0, 0.7]),
    ([6, 5, 4, 3, 2], "linear", "linear", "mse", 0.0, 0.0, 1.0),
]


def _native(net, X, Y, fast, **kw):
    return dk.gradcheck(net, X, Y, engine_options={"fast_path": fast}, **kw)


def fast_and_general(case, seed, m):
    """One path-comparison case (dims, hidden, output, loss, l2, l1, keep) checked with the engine's shortcut on
    and off, on the same random net and data: returns the pieces each comparison test asserts on."""
    dims, hidden, output, loss, l2, l1, keep = case
    rng = np.random.default_rng(seed + len(dims))
    p = make_params(dims, rng)
    X = rng.standard_normal((dims[0], m))
    Y = make_Y(loss, output, dims[-1], m, rng)
    kp = ref.normalize_keep_prob(keep, len(dims) - 1)
    net = dk.Network(dims, hidden=hidden, output=output, loss=loss, params=p)
    kw = dict(l2=l2, l1=l1, keep_prob=kp, seed=5, eps=1e-6)
    fast = _native(net, X, Y, True, **kw)
    gen = _native(net, X, Y, False, **kw)
    n_hidden = net.n_params - dims[-1] * (dims[-2] + 1)
    return net, X, Y, kp, fast, gen, n_hidden


@pytest.mark.parametrize("case", FAST_CASES, ids=lambda c: f"{c[1]}-{c[2]}-{c[3]}-L{len(c[0]) - 1}-kp{c[6]}")
def test_fast_path_equals_general_path_and_reference(case):
    """Coordinate by coordinate: the fast path, the general path and the reference loop agree; kink flags equal."""
    dims, hidden, output, loss, l2, l1, keep = case
    m, L = 13, len(dims) - 1
    net, X, Y, kp, fast, gen, n_hidden_coords = fast_and_general(case, 40, m)
    assert fast.engine_stats["fast"] + fast.engine_stats["routed"] == n_hidden_coords
    assert fast.engine_stats["fast"] > 0.8 * n_hidden_coords
    assert gen.engine_stats == {"fast": 0, "general": net.n_params, "routed": 0, "series": 0}
    scale = np.abs(gen.approx).max()
    np.testing.assert_allclose(fast.approx, gen.approx, rtol=1e-9, atol=1e-13 * scale)
    np.testing.assert_array_equal(fast.flags, gen.flags)
    # the oracle: the reference loop on the masks the seed draws
    masks = [None if kp[l] == 1.0 else dk.dropout_mask((dims[l], m), kp[l], 5, 0, l) for l in range(L)]
    g, approx_ref = ref_loop(net, X, Y, l2, l1, kp, masks)
    ok = fast.flags == 0
    np.testing.assert_allclose(fast.approx[ok], approx_ref[ok], rtol=1e-6, atol=1e-8 * max(1.0, np.abs(g).max()))
    assert fast.verdict == "correct", str(fast)


@pytest.mark.parametrize("hidden,output,loss", [("linear", "softmax", "ce"), ("leaky_relu", "sigmoid", "bce"),
                                                ("linear", "sigmoid", "mse")])
def test_fast_path_large_eps_uses_exact_library_forms(hidden, output, loss):
    """eps = 0.02: output changes beyond the polynomial range (|v| > 2^-9) take the libm expm1/log1p forms."""
    rng = np.random.default_rng(21)
    dims, m = [5, 6, 4, 3 if loss == "ce" else 2], 7
    net = dk.Network(dims, hidden=hidden, output=output, loss=loss, params=make_params(dims, rng, scale=2.0))
    X = 3.0 * rng.standard_normal((5, m))
    Y = make_Y(loss, output, dims[-1], m, rng)
    fast = _native(net, X, Y, True, eps=0.02, l2=0.1)
    gen = _native(net, X, Y, False, eps=0.02, l2=0.1)
    assert fast.engine_stats["fast"] > 0
    np.testing.assert_allclose(fast.approx, gen.approx, rtol=1e-10, atol=1e-13 * np.abs(gen.approx).max())
    np.testing.assert_array_equal(fast.flags, gen.flags)


def _kinky_net(rng, dims, m, hidden="relu"):
    """Layer 1: every unit exactly at its kink for example 0; layer 2: units 1e-9 and 1e-7 from theirs for
    examples 1 and 2 (reachable through W1/b1 perturbations only: downstream kinks)."""
    p = make_params(dims, rng)
    X = rng.standard_normal((dims[0], m))
    p["b1"] = -(p["W1"] @ X[:, :1])
    act = (lambda z: np.maximum(z, 0)) if hidden == "relu" else (lambda z: np.where(z > 0, z, 0.01 * z))
    A1 = act(p["W1"] @ X + p["b1"])
    p["b2"] = -(p["W2"] @ A1[:, 1:2]) + 1e-9
    p["b2"][::2] += -(p["W2"][::2] @ A1[:, 2:3]) - p["b2"][::2] + 1e-7
    return p, X


@pytest.mark.parametrize("hidden", ["relu", "leaky_relu"])
@pytest.mark.parametrize("keep", [1.0, 0.8])
def test_fast_path_routes_kinks_and_flags_exactly_as_before(hidden, keep):
    rng = np.random.default_rng(31)
    dims, m = [4, 10, 8, 6, 3], 9
    p, X = _kinky_net(rng, dims, m, hidden)
    Y = make_Y("ce", "softmax", 3, m, rng)
    net = dk.Network(dims, hidden=hidden, output="softmax", loss="ce", params=p)
    kw = dict(eps=1e-6, l2=0.2, keep_prob=keep, seed=2)
    fast = _native(net, X, Y, True, **kw)
    gen = _native(net, X, Y, False, **kw)
    assert gen.n_kinks > 10
    assert fast.engine_stats["routed"] >= fast.n_kinks  # every flagged coordinate went through the general path
    np.testing.assert_array_equal(fast.flags, gen.flags)
    ok = gen.flags == 0
    np.testing.assert_allclose(fast.approx[ok], gen.approx[ok], rtol=1e-9, atol=1e-13 * np.abs(gen.approx).max())
    np.testing.assert_allclose(fast.approx, gen.approx, rtol=1e-9, atol=1e-9 * np.abs(gen.approx).max())
    # units 1e-9 from their kinks: some coordinates cannot be verified even one-sided -> "unverified"
    assert fast.verdict in ("correct", "unverified") and float(fast) < 2e-7, str(fast)
    # W1 coordinates whose only kink is downstream (layer 2, 1e-9 away) are routed and flagged
    w1 = slice(0, dims[1] * dims[0])
    assert np.any(fast.flags[w1] != 0)


def test_fast_path_downstream_margin_is_exact_at_the_boundary():
    """A layer-2 unit at distance d from its kink, perturbations of W1 reaching it with |dZ2| just below and just
    above d: the fast path agrees with the general path on every flag, for eps scanned across the boundary."""
    rng = np.random.default_rng(17)
    dims, m = [3, 4, 3, 2], 3
    p = make_params(dims, rng)
    X = rng.standard_normal((3, m))
    A1 = np.maximum(p["W1"] @ X + p["b1"], 0)
    p["b2"] = -(p["W2"] @ A1[:, :1]) + 1e-8
    net = dk.Network(dims, hidden="relu", output="softmax", loss="ce", params=p)
    Y = make_Y("ce", "softmax", 2, m, rng)
    routed = 0
    for eps in np.geomspace(1e-10, 1e-6, 41):
        fast = _native(net, X, Y, True, eps=float(eps))
        gen = _native(net, X, Y, False, eps=float(eps))
        np.testing.assert_array_equal(fast.flags, gen.flags)
        np.testing.assert_allclose(fast.approx, gen.approx, rtol=1e-8, atol=1e-12)
        routed += fast.engine_stats["routed"]
    assert routed > 0


def test_fast_path_identical_for_any_thread_count():
    rng = np.random.default_rng(19)
    dims, m = [12, 16, 10, 8, 4], 37
    p, X = _kinky_net(rng, dims, m, "leaky_relu")
    Y = make_Y("ce", "softmax", 4, m, rng)
    net = dk.Network(dims, hidden="leaky_relu", output="softmax", params=p)
    before = dk.get_num_threads()
    try:
        out = []
        for t in (1, 2, 7):
            dk.set_num_threads(t)
            r = dk.gradcheck(net, X, Y, l2=0.1, l1=0.05, keep_prob=0.85, seed=4, eps=1e-6)
            d = dk.gradcheck(net, X, Y, l2=0.1, keep_prob=0.85, seed=4, mode="directional", n_directions=4)
            out.append((r.approx.copy(), r.flags.copy(), r.engine_stats, d.approx.copy(), d.flags.copy()))
    finally:
        dk.set_num_threads(0 if before == 0 else before)
    assert out[0][2]["fast"] > 0 and out[0][2]["routed"] > 0
    for a, f, st, da, df in out[1:]:
        np.testing.assert_array_equal(a, out[0][0])
        np.testing.assert_array_equal(f, out[0][1])
        assert st == out[0][2]
        np.testing.assert_array_equal(da, out[0][3])
        np.testing.assert_array_equal(df, out[0][4])


def test_engine_options(small):
    net, X, Y, g = _planted(small)
    r = dk.gradcheck(net, X, Y)
    # tanh hidden layers: the smooth path does their coordinates (the output layer's are the general path's)
    assert r.engine_stats == {"fast": 64, "general": 15, "routed": 0, "series": 64}
    with pytest.raises(ValueError, match="unknown engine_options"):
        dk.gradcheck(net, X, Y, engine_options={"fastpath": False})
    with pytest.raises(TypeError):
        dk.gradcheck(net, X, Y, engine_options={"fast_path": 1})
    with pytest.raises(ValueError, match="engine_options"):
        dk.gradcheck(lambda t: float(t @ t), np.ones(2), 2 * np.ones(2), engine_options={"fast_path": False})


# ----------------------------------------------------------------------------- batched directions

def test_batched_directions_equal_reference_one_by_one():
    """Several directions in one native call (localized, spanning layers, zero, duplicated) equal the reference
    loop along each direction, and each equals the same direction checked alone."""
    rng = np.random.default_rng(23)
    dims, m = [6, 8, 7, 5, 3], 10
    p = make_params(dims, rng)
    X = rng.standard_normal((6, m))
    Y = make_Y("ce", "softmax", 3, m, rng)
    net = dk.Network(dims, hidden="relu", output="softmax", params=p)
    n = net.n_params
    sl = {k: s for k, (s, _) in __import__("dnnkit._params", fromlist=["layer_slices"]).layer_slices(dims).items()}
    dirs = []
    for names in (["W1"], ["b1"], ["W2", "b3"], ["b2"], ["W1", "W3", "b4"], ["W4"], []):
        d = np.zeros(n)
        for nm in names:
            d[sl[nm]] = rng.standard_normal(sl[nm].stop - sl[nm].start)
        dirs.append(d / max(np.linalg.norm(d), 1e-300))
    dirs.append(dirs[0].copy())
    dirs.append(rng.standard_normal(n))
    D = np.array(dirs)
    theta = net.theta.copy()
    kp = [1.0, 0.8, 0.8, 0.8]
    masks = [None] + [dk.dropout_mask((dims[l], m), 0.8, 9, 0, l) for l in (1, 2, 3)]
    from dnnkit import _core
    args = (_core.GradcheckProblem(dims, "relu", "softmax", "ce", 0.01, theta, X, Y, kp, 9, 0, [], 0.3, 0.2), 1e-6)
    a, kinks, _ = _core.gradcheck_directions(*args, D)
    assert a[6] == 0.0 and kinks[6] == 0
    assert a[7] == a[0]
    for k in range(len(D)):
        def J(t, d=D[k]):
            q = vector_to_params(theta + t[0] * d, dims)
            AL, c = ref.forward_propagation(X, q, "relu", "softmax", keep_prob=kp, masks=masks)
            return ref.compute_cost(AL, Y, q, "ce", 0.3, 0.2, ZL=c["Z4"])
        _, a_ref = ref.gradient_check(J, np.zeros(1), np.zeros(1), 1e-6)
        np.testing.assert_allclose(a[k], a_ref[0], rtol=1e-6, atol=1e-9)
        alone, _, _ = _core.gradcheck_directions(*args, D[k:k + 1])
        np.testing.assert_allclose(alone[0], a[k], rtol=1e-12, atol=1e-15)


def test_component_directions_equal_dense_directions():
    """The localized directions of mode='directional' (one (r, n) matrix, one call) equal the same directions
    passed densely, and the report's g.d uses the same vectors."""
    rng = np.random.default_rng(29)
    dims, m = [5, 6, 4, 3], 8
    net = dk.Network(dims, hidden="leaky_relu", output="softmax", params=make_params(dims, rng))
    X = rng.standard_normal((5, m))
    Y = make_Y("ce", "softmax", 3, m, rng)
    from dnnkit import _core
    from dnnkit._params import layer_slices
    V = rng.standard_normal((2, net.n_params))
    args = (_core.GradcheckProblem(dims, "leaky_relu", "softmax", "ce", 0.01, net.theta.copy(), X, Y, [1.0, 0.8, 0.9],
                                   3, 0, [], 0.2, 0.1), 1e-6)
    a, kinks, J0 = _core.gradcheck_component_directions(*args, V)
    dense = []
    for sl, _ in layer_slices(dims).values():
        for t in range(2):
            d = np.zeros(net.n_params)
            d[sl] = V[t, sl]
            dense.append(d)
    b, kinks_b, J0_b = _core.gradcheck_directions(*args, np.array(dense))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(kinks, kinks_b)
    assert J0 == J0_b
