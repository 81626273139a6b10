"""One rule, one message: the public functions that share an argument kind reject it the same way, because
they all call dnnkit._validation."""
import numpy as np
import pytest

import dnnkit as dk
from dnnkit import _validation as V
from dnnkit import data, datasets

X = np.arange(12.0).reshape(2, 6)
Y = (np.arange(6) % 2).reshape(1, 6).astype(float)


@pytest.mark.parametrize("call", [
    lambda rng: dk.initialize_parameters([2, 3], rng=rng),
    lambda rng: data.augment_noise(X, std=0.1, rng=rng),
    lambda rng: datasets.moons(m=10, seed=rng),
    lambda rng: dk.gradcheck(dk.Network([2, 1]), X, Y, mode="sample", k=1, rng=rng),
], ids=["init", "augment_noise", "datasets", "gradcheck"])
def test_every_rng_argument_is_checked_by_the_same_rule(call):
    with pytest.raises(ValueError, match="an int seed must be >= 0, got -1"):
        call(-1)
    with pytest.raises(TypeError, match="must be None, an int seed"):
        call(1.5)
    call(np.random.default_rng(0))  # a Generator is accepted everywhere


@pytest.mark.parametrize("call", [
    lambda d: dk.initialize_parameters(d),
    lambda d: dk.Network(d),
    lambda d: dk.vector_to_params(np.zeros(3), d),
], ids=["init", "Network", "vector_to_params"])
@pytest.mark.parametrize("dims, exc, match", [
    ([3], ValueError, "at least 2 entries"),
    ([2, 0], ValueError, "every layer size must be >= 1"),
    ([2, 1.5], TypeError, "layer sizes must be integers"),
    ([2, V.MAX_LAYER_UNITS + 1], ValueError, f"<= {V.MAX_LAYER_UNITS}"),
    (5, TypeError, "sequence of ints"),
], ids=["one-entry", "zero", "float", "too-large", "not-a-sequence"])
def test_every_layer_dims_argument_is_checked_by_the_same_rule(call, dims, exc, match):
    with pytest.raises(exc, match=match):
        call(dims)


@pytest.mark.parametrize("kw, exc, match", [
    (dict(lo=0.0), ValueError, r"x must be finite and >= 0, got -1"),
    (dict(lo=0.0, lo_open=True), ValueError, r"x must be finite and > 0, got -1"),
    (dict(lo=0.0, hi=1.0, hi_open=True), ValueError, r"x must be finite and in \[0, 1\), got -1"),
])
def test_check_real_words_its_bounds(kw, exc, match):
    with pytest.raises(exc, match=match):
        V.check_real(-1, "x", **kw)
    with pytest.raises(TypeError, match="x must be a real number"):
        V.check_real(True, "x", **kw)


def test_as_array_keeps_dtype_without_one_and_converts_with_one():
    a = np.arange(6, dtype=np.int32).reshape(2, 3)
    assert V.as_array(a, "a") is a
    b = V.as_array(a, "a", np.float32)
    assert b.dtype == np.float32 and b.flags.c_contiguous
    with pytest.raises(ValueError, match="NaN or Inf"):
        V.as_array(np.array([[1e300]]), "a", np.float32)  # finite in float64, Inf in float32
    with pytest.raises(TypeError, match="real numeric"):
        V.as_array(np.ones((2, 2), complex), "a")


def test_the_limits_are_the_native_cores():
    # one definition, in C++: Python reads them from _core instead of keeping its own numbers
    assert V.MAX_LAYER_UNITS == dk._core.MAX_LAYER_UNITS and V.MAX_THREADS == dk._core.MAX_THREADS
    with pytest.raises(ValueError, match=f"<= {dk._core.MAX_LAYER_UNITS}"):
        dk.Network([2, dk._core.MAX_LAYER_UNITS + 1, 1])  # refused in Python, before any allocation
    with pytest.raises(ValueError, match=rf"\[0, {dk._core.MAX_THREADS}\]"):
        dk.set_num_threads(dk._core.MAX_THREADS + 1)
