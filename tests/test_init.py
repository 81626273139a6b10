"""dnnkit.init: the course's numbers, the distributions, reproducibility, validation."""
import numpy as np
import pytest

from dnnkit.init import INIT_METHODS, init_std, initialize_parameters

GAUSSIAN = {
    "he": lambda n_in, n_out: np.sqrt(2.0 / n_in),
    "lecun": lambda n_in, n_out: np.sqrt(1.0 / n_in),
    "glorot": lambda n_in, n_out: np.sqrt(2.0 / (n_in + n_out)),
    "xavier": lambda n_in, n_out: np.sqrt(2.0 / (n_in + n_out)),
    "random": lambda n_in, n_out: 0.01,
}
UNIFORM_BOUND = {
    "he_uniform": lambda n_in, n_out: np.sqrt(6.0 / n_in),
    "lecun_uniform": lambda n_in, n_out: np.sqrt(3.0 / n_in),
    "glorot_uniform": lambda n_in, n_out: np.sqrt(6.0 / (n_in + n_out)),
    "xavier_uniform": lambda n_in, n_out: np.sqrt(6.0 / (n_in + n_out)),
    "random_uniform": lambda n_in, n_out: 0.01,
}
N_IN, N_OUT = 500, 400  # W1 is (400, 500): 200k draws, std estimate good to ~0.3%


def test_course_value_he_randomstate_3():
    params = initialize_parameters([2, 4, 1], "he", rng=np.random.RandomState(3))
    np.testing.assert_allclose(params["W1"][0], [1.78862847, 0.43650985], rtol=0, atol=1e-8)


def test_randomstate_matches_course_loop_bit_for_bit():
    dims = [5, 7, 3, 2]
    np.random.seed(3)
    expected = {}
    for l in range(1, len(dims)):
        expected[f"W{l}"] = np.random.randn(dims[l], dims[l - 1]) * np.sqrt(2.0 / dims[l - 1])
        expected[f"b{l}"] = np.zeros((dims[l], 1))
    got = initialize_parameters(dims, "he", rng=np.random.RandomState(3))
    assert list(got) == list(expected)
    for k in expected:
        np.testing.assert_array_equal(got[k], expected[k])


def test_random_times_10_matches_course_loop():
    dims = [2, 10, 5, 1]
    np.random.seed(3)
    expected = [np.random.randn(dims[l], dims[l - 1]) * 10 for l in range(1, len(dims))]
    got = initialize_parameters(dims, "random", rng=np.random.RandomState(3), scale=10)
    for l, W in enumerate(expected, start=1):
        np.testing.assert_array_equal(got[f"W{l}"], W)


@pytest.mark.parametrize("method", INIT_METHODS)
def test_shapes_dtype_and_zero_biases(method):
    dims = [3, 1, 4, 2]
    params = initialize_parameters(dims, method, rng=0)
    assert list(params) == ["W1", "b1", "W2", "b2", "W3", "b3"]
    for l in range(1, len(dims)):
        assert params[f"W{l}"].shape == (dims[l], dims[l - 1])
        assert params[f"b{l}"].shape == (dims[l], 1)
        assert params[f"W{l}"].dtype == np.float64 and params[f"b{l}"].dtype == np.float64
        assert not np.any(params[f"b{l}"])


def test_zeros_gives_zeros():
    params = initialize_parameters([3, 4, 1], "zeros")
    for v in params.values():
        assert not np.any(v)


@pytest.mark.parametrize("rng_factory", [lambda: np.random.default_rng(7), lambda: np.random.RandomState(7)],
                         ids=["Generator", "RandomState"])
@pytest.mark.parametrize("method", sorted(GAUSSIAN))
def test_gaussian_std_matches_formula(method, rng_factory):
    W = initialize_parameters([N_IN, N_OUT], method, rng=rng_factory())["W1"]
    want = GAUSSIAN[method](N_IN, N_OUT)
    assert abs(W.std() / want - 1) < 0.02
    assert abs(W.mean()) < 0.02 * want
    assert init_std(method, N_IN, N_OUT) == pytest.approx(want, rel=1e-15)


@pytest.mark.parametrize("rng_factory", [lambda: np.random.default_rng(7), lambda: np.random.RandomState(7)],
                         ids=["Generator", "RandomState"])
@pytest.mark.parametrize("method", sorted(UNIFORM_BOUND))
def test_uniform_bounds_and_std(method, rng_factory):
    W = initialize_parameters([N_IN, N_OUT], method, rng=rng_factory())["W1"]
    a = UNIFORM_BOUND[method](N_IN, N_OUT)
    assert np.all(np.abs(W) <= a)
    assert np.abs(W).max() > 0.99 * a  # fills the interval
    assert abs(W.std() / (a / np.sqrt(3)) - 1) < 0.02
    assert init_std(method, N_IN, N_OUT) == pytest.approx(a / np.sqrt(3), rel=1e-15)


@pytest.mark.parametrize("method", ["he", "lecun", "glorot", "he_uniform", "glorot_uniform"])
def test_scale_is_a_gain_on_std(method):
    base = initialize_parameters([30, 20], method, rng=5)["W1"]
    scaled = initialize_parameters([30, 20], method, rng=5, scale=3.0)["W1"]
    np.testing.assert_allclose(scaled, 3.0 * base, rtol=1e-12, atol=0)
    assert init_std(method, 30, 20, scale=3.0) == pytest.approx(3.0 * init_std(method, 30, 20), rel=1e-15)


def test_random_scale_sets_std_and_uniform_bound():
    W = initialize_parameters([N_IN, N_OUT], "random", rng=1, scale=10)["W1"]
    assert abs(W.std() / 10 - 1) < 0.02
    U = initialize_parameters([N_IN, N_OUT], "random_uniform", rng=1, scale=0.5)["W1"]
    assert np.all(np.abs(U) <= 0.5) and np.abs(U).max() > 0.495


def test_zeros_std_is_zero():
    assert init_std("zeros", 3, 4) == 0.0


@pytest.mark.parametrize("method", ["he", "glorot_uniform", "random"])
def test_int_seed_and_generator_reproducible(method):
    a = initialize_parameters([4, 6, 2], method, rng=42)
    b = initialize_parameters([4, 6, 2], method, rng=42)
    c = initialize_parameters([4, 6, 2], method, rng=np.random.default_rng(42))
    d = initialize_parameters([4, 6, 2], method, rng=43)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
        np.testing.assert_array_equal(a[k], c[k])
    assert not np.array_equal(a["W1"], d["W1"])


def test_generator_draws_standard_normal_layer_by_layer():
    g = np.random.default_rng(11)
    W1 = g.standard_normal((6, 4)) * np.sqrt(2.0 / 4)
    W2 = g.standard_normal((2, 6)) * np.sqrt(2.0 / 6)
    got = initialize_parameters([4, 6, 2], "he", rng=np.random.default_rng(11))
    np.testing.assert_array_equal(got["W1"], W1)
    np.testing.assert_array_equal(got["W2"], W2)


def test_none_rng_gives_fresh_draws():
    a = initialize_parameters([10, 10], "he")["W1"]
    b = initialize_parameters([10, 10], "he")["W1"]
    assert not np.array_equal(a, b)


def test_aliases_equal_their_targets():
    for alias, target in [("xavier", "glorot"), ("xavier_uniform", "glorot_uniform")]:
        a = initialize_parameters([5, 3], alias, rng=2)["W1"]
        b = initialize_parameters([5, 3], target, rng=2)["W1"]
        np.testing.assert_array_equal(a, b)


def test_numpy_int_layer_dims_accepted():
    p = initialize_parameters(np.array([3, 2]), "he", rng=0)
    assert p["W1"].shape == (2, 3)


BAD_CALLS = [
    ("unknown-method", dict(layer_dims=[2, 3], method="kaiming"), ValueError, "valid methods"),
    ("method-not-str", dict(layer_dims=[2, 3], method=None), ValueError, "valid methods"),
    ("one-layer", dict(layer_dims=[2]), ValueError, "at least 2"),
    ("empty-layers", dict(layer_dims=[]), ValueError, "at least 2"),
    ("zero-size", dict(layer_dims=[2, 0, 1]), ValueError, ">= 1"),
    ("negative-size", dict(layer_dims=[2, -3]), ValueError, ">= 1"),
    ("float-size", dict(layer_dims=[2, 3.5]), TypeError, "integers"),
    ("bool-size", dict(layer_dims=[2, True]), TypeError, "integers"),
    ("str-size", dict(layer_dims=[2, "3"]), TypeError, "integers"),
    ("dims-not-sequence", dict(layer_dims=5), TypeError, "sequence"),
    ("negative-scale", dict(layer_dims=[2, 3], method="random", scale=-1.0), ValueError, "scale"),
    ("nan-scale", dict(layer_dims=[2, 3], method="he", scale=float("nan")), ValueError, "scale"),
    ("inf-scale", dict(layer_dims=[2, 3], method="he", scale=float("inf")), ValueError, "scale"),
    ("str-scale", dict(layer_dims=[2, 3], method="he", scale="2"), TypeError, "scale"),
    ("rng-float", dict(layer_dims=[2, 3], rng=1.5), TypeError, "rng"),
    ("rng-str", dict(layer_dims=[2, 3], rng="seed"), TypeError, "rng"),
    ("rng-bool", dict(layer_dims=[2, 3], rng=True), TypeError, "rng"),
    ("rng-bad-type-with-zeros", dict(layer_dims=[2, 3], method="zeros", rng=object()), TypeError, "rng"),
    ("rng-negative-seed", dict(layer_dims=[2, 3], rng=-1), ValueError, "seed"),
]


@pytest.mark.parametrize("kwargs, exc, match", [c[1:] for c in BAD_CALLS], ids=[c[0] for c in BAD_CALLS])
def test_validation(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        initialize_parameters(**kwargs)


def test_init_std_validates_method():
    with pytest.raises(ValueError, match="valid methods"):
        init_std("bogus", 3, 4)
