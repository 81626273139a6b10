"""The fused small-net training step (cpp/dnnkit/small_layers.hpp): fit() on tiny nets runs all layers per block
of 16 examples instead of the BLAS passes. It must train what the BLAS path trains (to rounding: the summation
order differs), agree with the NumPy reference's gradient, and give the same bits for any thread count and on
every SIMD path."""
from contextlib import contextmanager

import numpy as np
import pytest

import dnnkit as dk
from dnnkit import _core as C
from dnnkit import reference as ref


def data(dims, m, output="sigmoid", loss="bce", seed=0, dtype="float64"):
    g = np.random.default_rng(seed)
    X = g.standard_normal((dims[0], m))
    if loss == "bce":
        Y = (g.random((dims[-1], m)) < 0.5).astype(float)
    elif output == "sigmoid":
        Y = g.random((dims[-1], m))
    else:
        Y = g.standard_normal((dims[-1], m))
    return X.astype(dtype), Y.astype(dtype)


def net_of(dims, hidden="relu", output="sigmoid", loss="bce", dtype="float64", seed=3):
    return dk.Network(dims, hidden=hidden, output=output, loss=loss, dtype=dtype).initialize("he", rng=seed)


@contextmanager
def small_layers(fused):
    """The fused step forced on (True) or off (False) for the Trainers built inside; the setting restored after."""
    old = C.set_small_layers(fused)
    try:
        yield
    finally:
        C.set_small_layers(old)


def train(fused, dims, m, epochs=40, hidden="relu", output="sigmoid", loss="bce", dtype="float64", **kw):
    with small_layers(fused):
        net = net_of(dims, hidden, output, loss, dtype)
        X, Y = data(dims, m, output, loss, dtype=dtype)
        h = net.fit(X, Y, epochs=epochs, learning_rate=kw.pop("learning_rate", 0.05), **kw)
    return net.theta.copy(), h


def theta_bytes(*a, **k):
    return train(*a, **k)[0].tobytes()


CASES = {  # name: (dims, m, hidden, output, loss, fit kwargs)
    "course": ([2, 20, 3, 1], 300, "relu", "sigmoid", "bce", {}),
    "tail": ([3, 7, 5, 2], 37, "relu", "sigmoid", "bce", {}),
    "one-example": ([4, 6, 1], 1, "relu", "sigmoid", "bce", {}),
    "dropout-l2": ([2, 20, 3, 1], 300, "relu", "sigmoid", "bce", dict(keep_prob=[0.9, 0.8, 0.7], seed=5, l2=0.3)),
    "l1": ([5, 8, 6, 1], 64, "relu", "sigmoid", "bce", dict(l1=0.2)),
    "minibatch-adam": ([5, 8, 6, 1], 150, "relu", "sigmoid", "bce",
                       dict(batch_size=32, optimizer="adam", learning_rate=0.01, seed=2)),
    "leaky-mse": ([4, 9, 9, 3], 70, "leaky_relu", "linear", "mse", {}),
    "linear-sigmoid-mse": ([3, 10, 2], 50, "linear", "sigmoid", "mse", {}),
    "logistic": ([4, 1], 50, "relu", "sigmoid", "bce", {}),  # one layer: no dA pass
    "deep-odd-m": ([6, 30, 12, 5, 1], 301, "relu", "sigmoid", "bce", {}),  # four layers; a last iteration with
    # whole blocks of padding on the wider SIMD paths (several blocks of 16 examples per iteration)
    # batches of 280, 280 and 40: two parts (a helper thread when there are two threads), then one part
    "two-part-minibatch": ([3, 10, 4, 1], 600, "relu", "sigmoid", "bce", dict(batch_size=280, seed=4)),
}


def test_eligibility():
    old = C.set_small_layers(True)  # the shapes and activations the fused step covers, whatever the CPU
    try:
        assert C.small_layers_eligible([2, 20, 3, 1], "relu", "sigmoid", "bce")
        assert C.small_layers_eligible([5, 8, 6, 1], "leaky_relu", "linear", "mse")
        assert not C.small_layers_eligible([784, 128, 64, 10], "relu", "softmax", "ce")
        assert not C.small_layers_eligible([2, 20, 3, 1], "tanh", "sigmoid", "bce")  # not covered: BLAS path
        assert not C.small_layers_eligible([2, 20, 3], "relu", "softmax", "ce")
        assert not C.small_layers_eligible([2, 65, 1], "relu", "sigmoid", "bce")  # a layer wider than 64
        assert not C.small_layers_eligible([30, 30, 1], "relu", "sigmoid", "bce")  # 930 weights > 512
        assert C.set_small_layers(False) is True
        assert not C.small_layers_eligible([2, 20, 3, 1], "relu", "sigmoid", "bce")
    finally:
        C.set_small_layers(old)


def test_automatic_choice_follows_the_cpu_not_a_forced_simd_level():
    """Automatic (None, the default): the fused step on CPUs with AVX2 or AVX-512F (measured faster than the BLAS
    path on both; SSE2-only CPUs keep BLAS); forcing a SIMD level changes the clone, never the algorithm."""
    old = C.set_small_layers(None)
    try:
        want = C.simd_info()["detected"] in ("avx2", "avx512")
        assert C.small_layers_eligible([2, 20, 3, 1], "relu", "sigmoid", "bce") is want
        try:
            for name in C.simd_info()["available"]:
                C.set_simd(name)
                assert C.small_layers_eligible([2, 20, 3, 1], "relu", "sigmoid", "bce") is want, name
        finally:
            C.set_simd("auto")
        assert C.set_small_layers(True) is None  # the previous setting: automatic
    finally:
        C.set_small_layers(old)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", list(CASES))
def test_fused_trains_what_the_blas_path_trains(case, dtype):
    dims, m, hidden, output, loss, kw = CASES[case]
    tf, hf = train(True, dims, m, hidden=hidden, output=output, loss=loss, dtype=dtype, **dict(kw))
    tb, hb = train(False, dims, m, hidden=hidden, output=output, loss=loss, dtype=dtype, **dict(kw))
    assert tf.dtype == np.dtype(dtype)
    tol = dict(rtol=1e-9, atol=1e-11) if dtype == "float64" else dict(rtol=2e-4, atol=2e-5)
    np.testing.assert_allclose(tf, tb, **tol)
    np.testing.assert_allclose(hf.train_cost, hb.train_cost, **tol)
    np.testing.assert_allclose(np.asarray(hf.grad_norms), np.asarray(hb.grad_norms), **tol)
    if loss != "mse":  # the error rate is a count: equal unless an output sits within rounding of 0.5
        assert np.max(np.abs(np.asarray(hf.train_error) - np.asarray(hb.train_error))) <= 1.0 / m + 1e-12
    assert not np.array_equal(tf, net_of(dims, hidden, output, loss, dtype).theta)  # it trained


@pytest.mark.parametrize("hidden,output,loss", [("relu", "sigmoid", "bce"), ("leaky_relu", "sigmoid", "mse"),
                                                ("linear", "linear", "mse")])
def test_one_step_is_the_reference_gradient(hidden, output, loss):
    """lr = 1, one full-batch gd step: theta0 - theta1 is the gradient, against reference.cost_and_gradients."""
    dims, m = [3, 12, 5, 2], 53
    X, Y = data(dims, m, output, loss)
    net = net_of(dims, hidden, output, loss)
    p0 = {k: v.copy() for k, v in net.params.items()}
    t0 = net.theta.copy()
    h = net.fit(X, Y, epochs=1, learning_rate=1.0, l2=0.2)
    J, grads = ref.cost_and_gradients(X, Y, p0, hidden, output, loss, l2=0.2)
    g = np.concatenate([grads[f"d{k}{l}"].ravel() for l in range(1, len(dims)) for k in "Wb"])
    np.testing.assert_allclose(t0 - net.theta, g, rtol=1e-10, atol=1e-14)
    assert h.train_cost[0] == pytest.approx(J, rel=1e-13)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", ["course", "dropout-l2", "deep-odd-m", "leaky-mse", "logistic"])
def test_one_step_gradient_equals_the_blas_path_to_rounding(case, dtype):
    """lr = 1, one full-batch gd step with the same masks: the fused step's gradient (theta0 - theta1) against the
    BLAS path's, to rounding (the two sum in different orders); and not bit-identical by accident of a no-op."""
    dims, m, hidden, output, loss, kw = CASES[case]
    kw = {k: v for k, v in kw.items() if k in ("keep_prob", "seed", "l2", "l1")}
    X, Y = data(dims, m, output, loss, dtype=dtype)
    g = {}
    for fused in (True, False):
        with small_layers(fused):
            net = net_of(dims, hidden, output, loss, dtype)
            t0 = net.theta.astype(np.float64)
            net.fit(X, Y, epochs=1, learning_rate=1.0, **kw)
        g[fused] = t0 - net.theta.astype(np.float64)
    scale = np.max(np.abs(g[False]))
    assert scale > 0
    tol = 1e-12 if dtype == "float64" else 2e-5
    np.testing.assert_allclose(g[True], g[False], rtol=0, atol=tol * scale)


@pytest.mark.parametrize("m", [127, 128, 129, 255, 256, 300, 1001])
def test_two_part_step_is_the_reference_gradient(m):
    """From SMALL_SPLIT_MIN = 128 examples a step is two parts of examples [0, h) and [h, m) (h a multiple of 32 near
    m / 2), summed lane by lane in each part, the two parts' sums added: lr = 1, one full-batch gd step against
    reference.cost_and_gradients, both sides of the threshold, with 2 threads (a helper thread takes part 1) and 1
    (one thread runs both parts: the same bits)."""
    dims = [3, 12, 5, 1]
    X, Y = data(dims, m)
    out = {}
    for n in (2, 1):
        net = net_of(dims)
        p0 = {k: v.copy() for k, v in net.params.items()}
        t0 = net.theta.copy()
        before = dk.get_num_threads()
        dk.set_num_threads(n)
        try:
            h = net.fit(X, Y, epochs=1, learning_rate=1.0)
        finally:
            dk.set_num_threads(before)
        out[n] = (net.theta.tobytes(), h.train_cost[0], h.train_error[0])
    assert out[1] == out[2]
    J, grads = ref.cost_and_gradients(X, Y, p0, "relu", "sigmoid", "bce")
    g = np.concatenate([grads[f"d{k}{l}"].ravel() for l in range(1, len(dims)) for k in "Wb"])
    np.testing.assert_allclose(t0 - net.theta, g, rtol=1e-10, atol=1e-14)
    assert h.train_cost[0] == pytest.approx(J, rel=1e-13)
    AL, _ = ref.forward_propagation(X, p0, "relu", "sigmoid")
    assert h.train_error[0] == np.mean((AL > 0.5) != (Y > 0.5))  # both parts' error counts


def test_two_part_step_interrupted_and_with_validation():
    """The helper-thread loop (m >= 128, no dropout) stops where the one-thread loop stops: a native stop after
    global step 7 (3 steps an epoch) keeps epochs 1-2, bit-identical to training 2 epochs; validation and early
    stopping see the same costs with 1 and 2 threads."""
    dims = [2, 20, 3, 1]
    X, Y = data(dims, 900)
    Xd, Yd = data(dims, 100, seed=1)
    net = net_of(dims)
    t0 = net.theta.copy()
    h = net.fit(X, Y, epochs=50, learning_rate=0.1, batch_size=300, seed=5, _stop_at_step=7)
    assert h.interrupted and h.epoch == [1, 2]
    again = net_of(dims)
    again.fit(X, Y, epochs=2, learning_rate=0.1, batch_size=300, seed=5)
    assert net.theta.tobytes() == again.theta.tobytes()
    runs = {}
    for n in (1, 2):
        before = dk.get_num_threads()
        dk.set_num_threads(n)
        try:
            net.theta = t0
            es = dk.EarlyStopping(patience=2, restore_best=True)
            h = net.fit(X, Y, epochs=30, learning_rate=2.0, validation=(Xd, Yd), early_stopping=es)
        finally:
            dk.set_num_threads(before)
        runs[n] = (net.theta.tobytes(), np.asarray(h.dev_cost).tobytes(), len(h))
    assert runs[1] == runs[2]


def test_cost_agrees_with_network_cost_at_large_logits():
    """The fused exp / log1p (no libm) against Network.cost (libm exp) on the same parameters, including logits
    beyond the float64 exp range (|z| > 745: exp(-|z|) is 0 there, flushed to 0 below e^-708)."""
    dims, m = [2, 20, 3, 1], 300
    X, Y = data(dims, m)
    for scale in (1.0, 30.0, 400.0):
        net = net_of(dims)
        net.theta = net.theta * scale
        J = net.cost(X, Y)
        h = net.fit(X, Y, epochs=1, learning_rate=1e-300)  # the recorded cost is the one before the step
        assert np.isfinite(h.train_cost[0])
        assert h.train_cost[0] == pytest.approx(J, rel=1e-13)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", ["course", "dropout-l2", "minibatch-adam", "leaky-mse", "deep-odd-m",
                                  "two-part-minibatch"])
def test_same_bits_for_any_thread_count(case, dtype):
    dims, m, hidden, output, loss, kw = CASES[case]
    got = {n: theta_bytes(True, dims, m, epochs=15, hidden=hidden, output=output, loss=loss, dtype=dtype,
                          n_threads=n, **dict(kw)) for n in (1, 2, 7)}
    assert got[1] == got[2] == got[7]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", ["course", "tail", "dropout-l2", "minibatch-adam", "leaky-mse",
                                  "linear-sigmoid-mse", "logistic", "deep-odd-m", "one-example",
                                  "two-part-minibatch"])
def test_same_bits_on_every_simd_path(case, dtype):
    dims, m, hidden, output, loss, kw = CASES[case]
    info = C.simd_info()
    out = {}
    try:
        for name in info["available"]:
            C.set_simd(name)
            t, h = train(True, dims, m, epochs=15, hidden=hidden, output=output, loss=loss, dtype=dtype, **dict(kw))
            out[name] = (t.tobytes(), np.asarray(h.train_cost).tobytes(), np.asarray(h.grad_norms).tobytes())
    finally:
        C.set_simd("auto")
    assert len(out) >= 1 and "baseline" in out
    for name, v in out.items():
        assert v == out["baseline"], name


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("dims,m", [([2, 20, 3, 1], 300), ([3, 7, 5, 2], 37), ([4, 6, 1], 1),
                                    ([6, 30, 12, 5, 1], 301)])
def test_error_rate_counted_in_the_output_pass(dims, m, dtype):
    """The fused step counts the misclassified outputs of a reported epoch in its output pass (padded lanes
    excluded): the error rate of the parameters the epoch started from, as counted from Network.forward, and
    the BLAS path's count."""
    X, Y = data(dims, m, dtype=dtype)
    rates = []
    for fused in (True, False):
        with small_layers(fused):
            net = net_of(dims, dtype=dtype)
            net.theta = net.theta * 3.0  # outputs spread away from 0.5 (a count is exact away from rounding)
            A = net.predict_proba(X)
            want = float(np.mean((A > 0.5) != (Y > 0.5)))
            h = net.fit(X, Y, epochs=2, learning_rate=1e-3)
        assert h.train_error[0] == want
        rates.append(h.train_error)
    assert rates[0] == rates[1]
    assert 0.0 < rates[0][0] < 1.0 or m == 1


def test_validation_and_early_stopping_on_the_fused_path():
    """validation= is evaluated by the BLAS forward (Network.cost's pass): the recorded dev cost equals
    Network.cost on the epoch's parameters; EarlyStopping restores the best epoch bit-exactly."""
    dims, m = [2, 20, 3, 1], 300
    X, Y = data(dims, m)
    Xd, Yd = data(dims, 90, seed=1)
    seen = []

    class Grab(dk.callbacks.Callback):
        def on_epoch_end(self, epoch, net, history):
            seen.append((net.theta.copy(), history.dev_cost[-1]))
            return False

    net = net_of(dims)
    net.fit(X, Y, epochs=12, learning_rate=0.5, validation=(Xd, Yd), callbacks=[Grab()])
    for theta, dev in seen:
        probe = net_of(dims)
        probe.theta = theta
        assert dev == probe.cost(Xd, Yd)
    es = dk.EarlyStopping(patience=3, restore_best=True)
    net = net_of(dims)
    h = net.fit(X, Y, epochs=200, learning_rate=3.0, validation=(Xd, Yd), early_stopping=es)
    best = int(np.argmin(h.dev_cost))
    assert es.best_epoch == h.epoch[best]
    assert net.cost(Xd, Yd) == h.dev_cost[best]
