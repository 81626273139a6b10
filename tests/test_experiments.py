"""The seeds' experiments (dnnkit.experiments): the claims the demo prints."""
import numpy as np
import pytest

from dnnkit import experiments as E


@pytest.fixture(scope="module")
def init_res():
    return E.initialization(quick=True)


@pytest.fixture(scope="module")
def reg_res():
    return E.regularization()  # the full 30,000 iterations: about a second natively


def test_initialization_zeros_stays_at_50_percent(init_res):
    z = init_res.row("zeros")
    assert z["train acc"] == pytest.approx(0.5) and z["test acc"] == pytest.approx(0.5)
    assert z["final cost"] == pytest.approx(np.log(2), abs=1e-9)   # symmetry never broken: J stays at ln 2


def test_initialization_he_and_random(init_res):
    he, rnd = init_res.row("he"), init_res.row("random x10")
    assert he["train acc"] >= 0.95 and he["test acc"] >= 0.95
    assert rnd["initial cost"] > 10 * he["initial cost"]               # x10 weights saturate the sigmoid
    assert "zeros" in str(init_res) and "he" in init_res.table()


def test_initialization_full_length_he():
    res = E.initialization()                                        # 15,000 iterations as in the seeds
    assert res.row("he")["test acc"] >= 0.95 and res.row("zeros")["train acc"] == pytest.approx(0.5)


def test_regularization_l2_and_dropout_beat_none_on_dev(reg_res):
    none, l2, drop = reg_res.rows
    assert l2["dev acc"] > none["dev acc"] and drop["dev acc"] > none["dev acc"]
    assert none["train acc"] > l2["train acc"]                       # the unregularized net fits the noise
    assert none["verdict"] == "high variance"                        # judged against the label-noise Bayes error
    assert 0.03 < reg_res.extra["bayes_error"] < 0.1


def test_gradient_checking_localizes_both_bugs():
    res = E.gradient_checking()
    buggy = res.extra["reports"]["course backprop, 2 planted bugs"]
    assert float(buggy) == pytest.approx(0.28509315, abs=1e-6) and buggy.verdict == "bug"
    assert set(res.extra["localized"]) == {"W2", "b1"}
    assert "x2" in res.extra["findings"]["W2"] and "x4" in res.extra["findings"]["b1"]
    others = [c for c in buggy.components if c.name not in ("W2", "b1")]
    assert all(c.verdict == "correct" for c in others)
    assert res.row("course backprop, fixed")["verdict"] == "correct"
    assert res.row("dnnkit net.backward")["verdict"] == "correct"


def test_course_backprop_fixed_matches_native():
    import dnnkit as dk

    X, Y, params = E.course_gradcheck_case()
    g = E.course_backprop(X, Y, params, planted_bugs=False)
    net = dk.Network([4, 5, 3, 1], params=params)
    native = net.backward(X, Y)
    for k, v in g.items():
        np.testing.assert_allclose(native[k], v, rtol=1e-12, atol=1e-14)


@pytest.fixture(scope="module")
def ve_res():
    return E.vanishing_exploding()


def test_vanishing_exploding_deep_linear_ratios(ve_res):
    res = ve_res
    assert res.row("linear, W = 1.5 I")["A[L-1]/x"] == pytest.approx(1.5 ** 9, rel=1e-12)
    assert res.row("linear, W = 0.5 I")["A[L-1]/x"] == pytest.approx(0.5 ** 9, rel=1e-12)
    assert res.row("linear, W = 1.5 I")["verdict"] == "exploding"
    assert res.row("linear, W = 0.5 I")["verdict"] == "vanishing"
    for good in ("relu, he", "tanh, lecun", "tanh, glorot"):
        assert res.row(good)["verdict"] == "stable"
    assert 0.3 < res.row("relu, he")["A[L-1]/x"] < 3
    assert res.row("relu, random x0.01")["verdict"] == "vanishing"
    assert res.row("relu, random x1")["verdict"] == "exploding"


def test_results_serialize_and_figures(tmp_path):
    res = E.vanishing_exploding(depth=10, deep_depth=6, width=20, m=50, out_dir=tmp_path)
    assert res.to_dict()["rows"][0]["net"] == "linear, W = 1.5 I"
    assert res.figures == [str(tmp_path / "propagation.png")]
    assert (tmp_path / "propagation.png").stat().st_size > 1000


def test_gradient_checking_names_the_learner_mistake_only_hypotheses_can():
    res = E.gradient_checking()
    assert res.row("learner backprop, ReLU derivative left out in layer 2")["verdict"] == "bug"
    assert [(n, l) for n, l, _, _ in res.extra["named"]] == [("deriv_missing", 2)]
    # without the hypotheses the patterns only say where the errors are: no constant, sign, term or transpose
    pats = res.extra["patterns_without_hypotheses"]
    assert set(pats) == {"W1", "b1", "W2", "b2"}
    for p in pats.values():
        assert not any(w in p for w in ("scaled", "sign", "L2", "L1", "transposed", "zero"))
    text = "\n".join(res.notes)
    assert "fix layer 2 first" in text and "dZ2 = dA2 * (Z2 > 0)" in text
