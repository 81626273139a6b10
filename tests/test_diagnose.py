"""dk.diagnose: the seeds' bias/variance table and the vanishing/exploding example."""
from types import SimpleNamespace

import numpy as np
import pytest
from numpy.testing import assert_allclose

from dnnkit import diagnose


# ---------------------------------------------------------------------------------------- bias / variance

SEEDS_TABLE = [
    (0.01, 0.11, "high variance", False, True),
    (0.15, 0.16, "high bias", True, False),
    (0.15, 0.30, "high bias and high variance", True, True),
    (0.005, 0.01, "low bias and low variance", False, False),
]


@pytest.mark.parametrize("train, dev, verdict, hb, hv", SEEDS_TABLE,
                         ids=["1-11 variance", "15-16 bias", "15-30 both", "0.5-1 neither"])
def test_seeds_bias_variance_table(train, dev, verdict, hb, hv):
    d = diagnose.bias_variance(train, dev)
    assert d.verdict == verdict
    assert (d.high_bias, d.high_variance) == (hb, hv)
    assert d.avoidable_bias == pytest.approx(train)
    assert d.variance == pytest.approx(dev - train)


def test_bayes_error_15_percent_makes_second_model_fine():
    d = diagnose.bias_variance(0.15, 0.16, bayes_error=0.15)
    assert not d.high_bias and not d.high_variance
    assert d.verdict == "low bias and low variance"
    assert d.avoidable_bias == pytest.approx(0.0)


def test_recommendations_follow_basic_recipe():
    hv = diagnose.bias_variance(0.01, 0.11).recommendations
    text = " ".join(hv).lower()
    for word in ("more training data", "l2", "dropout", "augmentation", "early stopping", "architecture"):
        assert word in text
    assert not any("bigger network" in r for r in hv)
    hb = diagnose.bias_variance(0.15, 0.16).recommendations
    text = " ".join(hb).lower()
    for word in ("bigger network", "train longer", "architecture"):
        assert word in text
    assert not any("more training data" in r for r in hb)
    both = diagnose.bias_variance(0.15, 0.30).recommendations
    assert "bigger network" in both[0]  # bias first
    assert any("more training data" in r for r in both)


def test_diagnosis_str_is_readable():
    s = str(diagnose.bias_variance(0.01, 0.11))
    assert "high variance" in s and "11.00%" in s and "next steps" in s


def test_bias_variance_from_history_object_and_dict():
    h = SimpleNamespace(train_error=[0.3, 0.1, 0.01], dev_error=[0.35, 0.2, 0.11])
    assert diagnose.bias_variance(h).verdict == "high variance"
    d = {"train_error": [0.2, 0.15], "dev_error": [0.2, 0.16]}
    assert diagnose.bias_variance(d).verdict == "high bias"
    assert diagnose.bias_variance(d, bayes_error=0.15).verdict == "low bias and low variance"


def test_bias_variance_history_empty_raises():
    with pytest.raises(ValueError, match="empty"):
        diagnose.bias_variance(SimpleNamespace(train_error=[], dev_error=[]))


def test_bias_variance_rejects_percentages_with_hint():
    with pytest.raises(ValueError, match="percentage.*0.11"):
        diagnose.bias_variance(1.0 / 100, 11)


def test_bias_variance_rejects_bad_values():
    with pytest.raises(ValueError):
        diagnose.bias_variance(-0.1, 0.2)
    with pytest.raises(ValueError):
        diagnose.bias_variance(float("nan"), 0.2)
    with pytest.raises(TypeError):
        diagnose.bias_variance("0.1", 0.2)
    with pytest.raises(TypeError):
        diagnose.bias_variance(0.1)  # missing dev error, not a History
    with pytest.raises(ValueError):
        diagnose.bias_variance(0.1, 0.2, bayes_error=2.0)
    with pytest.raises(ValueError):
        diagnose.bias_variance(0.1, 0.2, tolerance=-0.01)


def test_tolerance_pair():
    d = diagnose.bias_variance(0.05, 0.08, tolerance=(0.1, 0.01))
    assert not d.high_bias and d.high_variance


# ---------------------------------------------------------------------------------------- propagation

@pytest.mark.parametrize("c", [1.5, 0.5])
def test_seeds_deep_linear_example(c):
    rep = diagnose.propagation(depth=10, width=2, activation="linear", weights=c)
    assert_allclose(rep.ratio, c ** 9, rtol=1e-12)  # the seeds: y_hat ~ c^(L-1) x
    assert_allclose(rep.output_ratio, c ** 10, rtol=1e-12)
    assert_allclose(rep.gradient_ratio, c ** 10, rtol=1e-12)
    act = np.array(rep.activation_scale)
    assert_allclose(act / act[0], c ** np.arange(11), rtol=1e-12)
    assert len(rep.gradient_scale) == 10 and len(rep.dA_scale) == 11
    assert rep.verdict == ("exploding" if c > 1 else "vanishing")


def test_seeds_example_numbers():
    assert diagnose.propagation(weights=1.5).ratio == pytest.approx(38.443359375, rel=1e-12)  # 1.5^9
    assert diagnose.propagation(weights=0.5).ratio == pytest.approx(0.001953125, rel=1e-12)  # 0.5^9


def test_he_relu_keeps_scale_near_one_while_small_random_vanishes():
    he = diagnose.propagation(depth=50, width=256, activation="relu", init="he", m=200, seed=0)
    act = np.array(he.activation_scale)
    assert np.all((act > 0.33) & (act < 3))
    grad = np.array(he.dA_scale)
    assert np.all((grad > 0.33) & (grad < 3))
    assert he.verdict == "stable"
    small = diagnose.propagation(depth=50, width=256, activation="relu", init="random", scale=0.01, m=50, seed=0)
    assert small.output_ratio < 1e-30 and small.verdict == "vanishing"
    big = diagnose.propagation(depth=50, width=256, activation="relu", init="random", scale=1.0, m=50, seed=0)
    assert big.output_ratio > 1e30 and big.verdict == "exploding"


@pytest.mark.parametrize("init", ["lecun", "glorot", "xavier"])
def test_lecun_glorot_tanh_stable_at_seeds_depth(init):
    rep = diagnose.propagation(depth=10, width=128, activation="tanh", init=init, m=200, seed=1)
    assert rep.verdict == "stable"
    lin = diagnose.propagation(depth=30, width=128, activation="linear", init=init, m=200, seed=1)
    assert lin.verdict == "stable"


def test_propagation_given_weights_and_x():
    rng = np.random.default_rng(0)
    Ws = [rng.standard_normal((3, 2)), rng.standard_normal((1, 3))]
    x = rng.standard_normal((2, 50))
    rep = diagnose.propagation(layer_dims=[2, 3, 1], weights=Ws, x=x, activation="linear")
    y = Ws[1] @ Ws[0] @ x
    assert rep.activation_scale[2] == pytest.approx(np.sqrt(np.mean(y ** 2)), rel=1e-12)
    rep2 = diagnose.propagation(layer_dims=[2, 3, 1], weights={"W1": Ws[0], "W2": Ws[1]}, x=x)
    assert rep2.activation_scale == rep.activation_scale


def test_propagation_overflow_reports_exploding_without_warnings():
    rep = diagnose.propagation(depth=400, width=8, activation="linear", init="random", scale=10.0, m=20)
    assert not np.isfinite(rep.activation_scale[-1])
    assert rep.verdict == "exploding"


def test_propagation_report_str():
    s = str(diagnose.propagation(weights=1.5))
    assert "verdict: exploding" in s and "38.44" in s
    assert len(s.splitlines()) >= 14


def test_propagation_validation():
    with pytest.raises(ValueError, match="activation"):
        diagnose.propagation(activation="swish")
    with pytest.raises(ValueError):
        diagnose.propagation(init="bogus")
    with pytest.raises(ValueError, match="shape"):
        diagnose.propagation(layer_dims=[2, 3], weights=[np.ones((2, 2))])
    with pytest.raises(ValueError, match="rows"):
        diagnose.propagation(depth=3, width=2, x=np.ones((3, 5)))
    with pytest.raises(ValueError, match="NaN"):
        diagnose.propagation(depth=3, width=2, x=np.full((2, 5), np.nan))
    with pytest.raises(ValueError):
        diagnose.propagation(depth=0)
    with pytest.raises(TypeError):
        diagnose.propagation(weights="identity")
    with pytest.raises(ValueError, match="upstream"):
        diagnose.propagation(upstream="zeros")


def test_bias_variance_from_history_without_dev_data_says_why():
    h = SimpleNamespace(train_error=[0.2, 0.1], dev_error=[float("nan"), float("nan")])
    with pytest.raises(ValueError, match="validation="):
        diagnose.bias_variance(h)
    h = {"train_error": [float("nan")], "dev_error": [0.1]}
    with pytest.raises(ValueError, match="regression"):
        diagnose.bias_variance(h)
