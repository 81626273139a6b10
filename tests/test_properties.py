"""Property-based tests (hypothesis): random architectures, dtypes, m (1 included), dropout, L2/L1.

- the native forward/cost/backward equal dnnkit.reference on the same masks;
- the gradient check of correct gradients says "correct";
- save -> load round-trips bit for bit;
- a random bad value for any argument of the public functions raises a dnnkit error / ValueError / TypeError and
  leaves every object unchanged.

Deterministic and bounded: derandomize=True (the examples come from a fixed seed), a few dozen examples per
property, no deadline (the machine is shared)."""
import os
import tempfile

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import dnnkit as dk  # noqa: E402
from dnnkit import reference as ref  # noqa: E402

PROPS = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                 suppress_health_check=[HealthCheck.too_slow])
PAIRS = [("sigmoid", "bce"), ("softmax", "ce"), ("linear", "mse"), ("sigmoid", "mse")]


@st.composite
def problems(draw, dtypes=("float64", "float32"), hidden=("relu", "leaky_relu", "tanh", "sigmoid", "linear")):
    L = draw(st.integers(1, 4))
    output, loss = draw(st.sampled_from(PAIRS))
    dims = [draw(st.integers(1, 6)) for _ in range(L)] + [draw(st.integers(2 if output == "softmax" else 1, 4))]
    m = draw(st.sampled_from([1, 2, 3, 7, 16]))
    seed = draw(st.integers(0, 2**16))
    kp = draw(st.sampled_from([1.0, 1.0, 0.5, 0.8, 0.95]))
    return dict(dims=dims, hidden=draw(st.sampled_from(hidden)), output=output, loss=loss,
                dtype=draw(st.sampled_from(dtypes)), m=m, seed=seed, keep_prob=kp,
                l2=draw(st.sampled_from([0.0, 0.0, 0.1, 0.7])), l1=draw(st.sampled_from([0.0, 0.0, 0.05])))


def build(p):
    g = np.random.default_rng(p["seed"])
    net = dk.Network(p["dims"], hidden=p["hidden"], output=p["output"], loss=p["loss"], dtype=p["dtype"])
    net.initialize("glorot", rng=p["seed"])
    m, dims = p["m"], p["dims"]
    X = g.standard_normal((dims[0], m))
    if p["loss"] == "ce":
        Y = np.eye(dims[-1])[:, g.integers(0, dims[-1], m)]
    elif p["loss"] == "bce":
        Y = (g.random((dims[-1], m)) > 0.5).astype(float)
    else:
        Y = g.standard_normal((dims[-1], m)) if p["output"] == "linear" else g.random((dims[-1], m))
    L = len(dims) - 1
    keep = [1.0] + [p["keep_prob"]] * (L - 1)
    masks = [None] + [(g.random((dims[l], m)) < keep[l]).astype(float) if keep[l] < 1 else None
                      for l in range(1, L)]
    return net, X, Y, keep, masks


@PROPS
@given(problems())
def test_native_equals_the_reference(p):
    net, X, Y, keep, masks = build(p)
    kw = dict(l2=p["l2"], l1=p["l1"], keep_prob=keep, masks=masks[1:])
    J = net.cost(X, Y, **kw)
    g = {k: v.astype(np.float64) for k, v in net.backward(X, Y, **kw).items()}
    params = {k: v.astype(np.float64) for k, v in net.params.items()}
    Jr, gr = ref.cost_and_gradients(X, Y, params, net.hidden, net.output, net.loss, p["l2"], p["l1"], keep,
                                    masks, net.alpha)
    # float64: rounding of a few dozen operations; float32: the native pass runs in float32 throughout
    rtol = 1e-9 if p["dtype"] == "float64" else 2e-3
    assert abs(J - Jr) <= rtol * max(1.0, abs(Jr))
    scale = max(1e-300, max(float(np.max(np.abs(gr[k]))) for k in g))
    for k in g:
        np.testing.assert_allclose(g[k], gr[k], rtol=0, atol=rtol * max(1.0, scale), err_msg=k)
    AL = net.forward(X, keep_prob=keep, masks=masks[1:])[0]
    ALr = ref.forward_propagation(X, params, net.hidden, net.output, keep, masks, alpha=net.alpha)[0]
    np.testing.assert_allclose(AL, ALr, rtol=rtol, atol=rtol)


@PROPS
@given(problems(dtypes=("float64", "float32")))
def test_gradcheck_of_correct_gradients_says_correct(p):
    net, X, Y, keep, masks = build(p)
    r = dk.gradcheck(net, X, Y, l2=p["l2"], l1=p["l1"], keep_prob=keep, masks=masks[1:])
    assert r.complete and r.n_checked == net.n_params
    if r.verdict == "check" and float(np.max(np.abs(r.grad))) < 1e-9:
        # known, separate false alarm (test_tiny_two_sided_gradient_is_not_check below): a whole gradient of size
        # ~1e-12 with no kink; the two-sided values have no absolute noise floor yet
        return
    # a ReLU kink within +-eps that cannot be verified one-sided makes the verdict "unverified", never "bug"
    assert r.verdict == "correct" or (r.verdict == "unverified" and r.n_unverified > 0), str(r)


ZERO_BLOCK = {"dims": [1, 1, 1, 1], "hidden": "relu", "output": "sigmoid", "loss": "bce", "dtype": "float64",
              "m": 2, "seed": 0, "keep_prob": 1.0, "l2": 0.0, "l1": 0.0}


def test_zero_block_with_a_one_sided_kink_value_is_not_a_bug():
    # found by the property above: the block b2 has true gradient 0 and its only coordinate crosses a kink; its
    # one-sided value is ~1e-12 (rounding/truncation), which the relative difference of an all-zero block used
    # to turn into 1.0 ("bug"). The value's error estimate (dnnkit.kinks) is the noise floor.
    net, X, Y, keep, masks = build(ZERO_BLOCK)
    r = dk.gradcheck(net, X, Y)
    assert r.n_one_sided == 1  # the situation
    i = int(np.flatnonzero(r.flags != 0)[0])
    assert r.grad[i] == 0.0 and 0 < abs(r.kink_approx[i]) <= r.kink_error[i] < 1e-8
    assert r.verdict == "correct", str(r)
    assert {c.name: c.verdict for c in r.components}["b2"] == "correct"


@pytest.mark.xfail(strict=True, reason="found by the property above: no kink, a whole gradient of ~2e-12 "
                   "(dropout keeps one path), max|a-g| ~2e-15 but the seeds' relative difference 4.7e-4 says "
                   "'check'; two-sided values need an absolute noise floor too (issue 10)")
def test_tiny_two_sided_gradient_is_not_check():
    p = {"dims": [3, 3, 1], "hidden": "relu", "output": "sigmoid", "loss": "bce", "dtype": "float64", "m": 1,
         "seed": 3, "keep_prob": 0.5, "l2": 0.0, "l1": 0.0}
    net, X, Y, keep, masks = build(p)
    r = dk.gradcheck(net, X, Y, keep_prob=keep, masks=masks[1:])
    assert r.n_kinks == 0 and float(np.max(np.abs(r.grad))) < 1e-9  # the situation
    assert r.verdict in ("correct", "unverified"), str(r)


@pytest.mark.parametrize("wrong", [1e-6, -3e-7, 1e-4, 0.3])
def test_zero_block_with_a_nonzero_gradient_above_the_error_estimate_is_a_bug(wrong):
    net, X, Y, keep, masks = build(ZERO_BLOCK)
    g = {k: v.astype(np.float64) for k, v in net.backward(X, Y).items()}
    assert g["db2"].item() == 0.0
    r = dk.gradcheck(net, X, Y, grads=dict(g, db2=np.full_like(g["db2"], wrong)))
    assert r.n_one_sided == 1
    i = int(np.flatnonzero(r.flags != 0)[0])
    assert r.kink_error[i] < abs(wrong)  # the floor is below the planted error, so it must be caught
    assert r.verdict == "bug", str(r)
    assert {c.name: c.verdict for c in r.components}["b2"] == "bug"


@PROPS
@given(problems(), st.booleans(), st.booleans())
def test_save_load_round_trips_bit_for_bit(p, with_normalizer, with_config):
    net, X, Y, keep, masks = build(p)
    if with_normalizer:
        net.normalizer = dk.data.Standardizer().fit(X if X.shape[1] > 1 else np.hstack([X, X + 1]))
    if with_config:
        net.fit(X, Y, epochs=2, learning_rate=0.01, keep_prob=keep, seed=p["seed"], l2=p["l2"])
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "m.npz")
        net.save(path)
        got = dk.Network.load(path)
    assert got.theta.tobytes() == net.theta.tobytes() and got.dtype == net.dtype
    assert (list(got.layer_dims), got.hidden, got.output, got.loss, got.alpha) == \
        (list(net.layer_dims), net.hidden, net.output, net.loss, net.alpha)
    assert getattr(got, "training_config", None) == getattr(net, "training_config", None)
    if with_normalizer:
        assert got.normalizer.mean_.tobytes() == net.normalizer.mean_.tobytes()
        assert got.normalizer.std_.tobytes() == net.normalizer.std_.tobytes()


# ----------------------------------------------------------------------------- bad values

BAD_VALUES = [None, True, False, -1, 0, 1, 2**40, -(2**70), 0.5, -0.5, 1.5, float("nan"), float("inf"), -float("inf"),
              1e308, 1 + 2j, "x", "", "relu", b"\x00", [], [1], [[1.0]], (0,), {}, {"a": 1}, set(), object(),
              np.array([]), np.array([[np.nan]]), np.zeros((2, 3, 4)), np.array(["a"]), np.float32(0.3),
              np.int64(3), slice(None)]


def _calls():
    """name -> (call(value, net, X, Y)) for one argument of a public function each."""
    c = {}
    for arg in ("l2", "l1", "keep_prob", "seed", "step", "masks"):
        c[f"backward.{arg}"] = lambda v, n, X, Y, a=arg: n.backward(X, Y, **{a: v, **({"keep_prob": 0.8}
                                                                                   if a != "keep_prob" else {})})
        c[f"forward.{arg}"] = lambda v, n, X, Y, a=arg: n.forward(X, **{a: v}) if a not in ("l2", "l1") else \
            n.cost(X, Y, **{a: v})
    c["backward.X"] = lambda v, n, X, Y: n.backward(v, Y)
    c["backward.Y"] = lambda v, n, X, Y: n.backward(X, v)
    for arg in ("epochs", "learning_rate", "batch_size", "optimizer", "beta", "beta1", "beta2", "epsilon", "l2",
                "l1", "keep_prob", "validation", "early_stopping", "callbacks", "seed", "verbose", "log_every",
                "train_eval", "on_interrupt", "n_threads"):
        c[f"fit.{arg}"] = lambda v, n, X, Y, a=arg: n.fit(X, Y, **{"epochs": 2, "seed": 0, a: v})
    for arg in ("l2", "l1", "keep_prob", "seed", "masks", "eps", "mode", "k", "n_directions", "indices", "rng",
                "engine_options", "grads"):
        c[f"gradcheck.{arg}"] = lambda v, n, X, Y, a=arg: dk.gradcheck(n, X, Y, **{a: v})
    c["gradcheck.X"] = lambda v, n, X, Y: dk.gradcheck(n, v, Y)
    c["Network.layer_dims"] = lambda v, n, X, Y: dk.Network(v)
    c["Network.hidden"] = lambda v, n, X, Y: dk.Network([2, 3, 1], hidden=v)
    c["Network.dtype"] = lambda v, n, X, Y: dk.Network([2, 3, 1], dtype=v)
    c["Network.params"] = lambda v, n, X, Y: dk.Network([2, 3, 1], params=v)
    c["set_params"] = lambda v, n, X, Y: n.set_params(v)
    c["theta"] = lambda v, n, X, Y: setattr(n, "theta", v)
    c["initialize.method"] = lambda v, n, X, Y: n.initialize(v)
    c["initialize.rng"] = lambda v, n, X, Y: n.initialize("he", rng=v)
    c["initialize.scale"] = lambda v, n, X, Y: n.initialize("random", rng=0, scale=v)
    c["predict.X"] = lambda v, n, X, Y: n.predict(v)
    c["evaluate.Y"] = lambda v, n, X, Y: n.evaluate(X, v)
    c["save.path"] = lambda v, n, X, Y: n.save(v) if not isinstance(v, str) or not v else None
    c["load.path"] = lambda v, n, X, Y: dk.Network.load(v) if not isinstance(v, (str, bytes)) or not v else None
    c["dropout_mask.keep_prob"] = lambda v, n, X, Y: dk.dropout_mask((3, 4), v, seed=0)
    c["dropout_mask.shape"] = lambda v, n, X, Y: dk.dropout_mask(v, 0.5, seed=0)
    c["set_num_threads"] = lambda v, n, X, Y: dk.set_num_threads(v)
    c["params_to_vector"] = lambda v, n, X, Y: dk.params_to_vector(v)
    c["vector_to_params.theta"] = lambda v, n, X, Y: dk.vector_to_params(v, [2, 3, 1])
    c["split.fractions"] = lambda v, n, X, Y: dk.data.split(X, Y, fractions=v, seed=0)
    c["split.seed"] = lambda v, n, X, Y: dk.data.split(X, Y, seed=v)
    c["one_hot.labels"] = lambda v, n, X, Y: dk.data.one_hot(v)
    c["one_hot.n_classes"] = lambda v, n, X, Y: dk.data.one_hot([0, 1, 2], v)
    c["Standardizer.fit"] = lambda v, n, X, Y: dk.data.Standardizer().fit(v)
    c["bias_variance.train_error"] = lambda v, n, X, Y: dk.diagnose.bias_variance(v, 0.1)
    c["bias_variance.bayes_error"] = lambda v, n, X, Y: dk.diagnose.bias_variance(0.1, 0.2, bayes_error=v)
    c["initialize_parameters.layer_dims"] = lambda v, n, X, Y: dk.initialize_parameters(v)
    c["initialize_parameters.method"] = lambda v, n, X, Y: dk.initialize_parameters([2, 3, 1], method=v)
    c["EarlyStopping.patience"] = lambda v, n, X, Y: dk.EarlyStopping(patience=v)
    c["EarlyStopping.monitor"] = lambda v, n, X, Y: dk.EarlyStopping(monitor=v)
    return c


CALLS = _calls()
ALLOWED = (ValueError, TypeError, KeyError, IndexError)  # KeyError: dnnkit's ParameterKeyError; IndexError: indices


@settings(max_examples=400, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(st.sampled_from(sorted(CALLS)), st.sampled_from(range(len(BAD_VALUES))))
def test_a_bad_value_raises_cleanly_and_changes_nothing(name, vi):
    value = BAD_VALUES[vi]
    g = np.random.default_rng(0)
    net = dk.Network([2, 3, 1]).initialize("he", rng=0)
    X = g.standard_normal((2, 6))
    Y = (g.random((1, 6)) > 0.5).astype(float)
    before = (net.theta.tobytes(), X.tobytes(), Y.tobytes(), dk.get_num_threads())
    value_before = value.tobytes() if isinstance(value, np.ndarray) and value.dtype != object else repr(value)
    allowed = ALLOWED + ((FileNotFoundError,) if name == "load.path" else ())  # load(''): no such file
    try:
        CALLS[name](value, net, X, Y)
    except allowed as e:
        assert str(e).strip(), f"{name}={value!r}: {type(e).__name__} without a message"
        if isinstance(e, KeyError):
            assert isinstance(e, dk.ParameterKeyError), f"{name}={value!r}: a bare KeyError"
        if isinstance(e, IndexError):
            assert name == "gradcheck.indices", f"{name}={value!r}: IndexError"
        assert (net.theta.tobytes(), X.tobytes(), Y.tobytes(), dk.get_num_threads()) == before, \
            f"{name}={value!r} failed but changed an object"
    else:
        pass  # a value that is valid for this argument (0 for l2, 1 for keep_prob, ...): nothing to check
    finally:
        dk.set_num_threads(0)
    after = value.tobytes() if isinstance(value, np.ndarray) and value.dtype != object else repr(value)
    assert after == value_before, f"{name} changed the value given to it"
