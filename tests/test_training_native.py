"""The history recorded by the native loop (cpp/dnnkit/train_history.hpp) means what the Python-side
recording meant: every row equals the one a per-epoch Python callback sees, and the native early stopping
equals dnnkit.EarlyStopping run in Python."""
import numpy as np
import pytest

import dnnkit as dk
from dnnkit import training
from dnnkit.callbacks import Callback, EarlyStopping


class NoOp(Callback):
    """A user callback: forces fit back to Python after every reported epoch (the pre-native path)."""

    def __init__(self):
        self.seen = []

    def on_epoch_end(self, epoch, net, history):
        self.seen.append((epoch, net.theta.copy(), history.dev_cost[-1], history.train_cost[-1]))
        return False


def data(m=120, seed=0, n=3):
    g = np.random.default_rng(seed)
    X = g.standard_normal((n, m))
    Y = (X[:1] - 0.5 * X[1:2] + 0.3 * g.standard_normal((1, m)) > 0).astype(float)
    return X, Y


def rows(h):
    d = h.to_dict()
    d.pop("time")
    d.pop("config")
    return d


@pytest.mark.parametrize("kw", [
    dict(), dict(log_every=3), dict(batch_size=32, keep_prob=0.8), dict(train_eval="full", l2=0.3),
    dict(optimizer="adam", batch_size=50, log_every=4),
], ids=lambda k: ",".join(f"{a}={b}" for a, b in k.items()) or "default")
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_native_rows_equal_the_per_epoch_python_path(kw, dtype):
    X, Y = data()
    Xd, Yd = data(70, 1)
    nets = [dk.Network([3, 8, 4, 1], dtype=dtype).initialize("he", rng=0) for _ in range(2)]
    cb = NoOp()
    h_native = nets[0].fit(X, Y, epochs=11, learning_rate=0.05, validation=(Xd, Yd), seed=2, **kw)
    h_python = nets[1].fit(X, Y, epochs=11, learning_rate=0.05, validation=(Xd, Yd), seed=2, callbacks=[cb], **kw)
    assert rows(h_native) == rows(h_python)  # bit for bit (NaN == NaN in lists compares by identity: check)
    assert nets[0].theta.tobytes() == nets[1].theta.tobytes()
    assert [s[0] for s in cb.seen] == h_python.epoch
    # each row's dev metrics are those of that epoch's parameters (the callback saw them)
    probe = dk.Network([3, 8, 4, 1], dtype=dtype)
    for epoch, theta, dev_cost, _ in cb.seen:
        probe.theta = theta
        J, err, _ = probe.cost_and_error(*probe.check_data(Xd, Yd))
        i = h_native.epoch.index(epoch)
        assert h_native.dev_cost[i] == J and h_native.dev_error[i] == err
    assert all(isinstance(e, int) for e in h_native.epoch)
    assert all(isinstance(v, float) for v in h_native.train_cost + h_native.time)
    assert all(len(g) == 3 for g in h_native.grad_norms)
    assert h_native.time == sorted(h_native.time) and h_native.time[0] > 0


def test_full_train_eval_row_is_the_final_full_pass():
    X, Y = data()
    net = dk.Network([3, 8, 1]).initialize("he", rng=0)
    h = net.fit(X, Y, epochs=7, learning_rate=0.1, l2=0.2, train_eval="full", seed=0)
    J, err, _ = net.cost_and_error(X, Y, l2=0.2)
    assert h.train_cost[-1] == J and h.train_error[-1] == err


@pytest.mark.parametrize("monitor", ["dev_cost", "dev_error", "train_cost"])
@pytest.mark.parametrize("restore_best", [True, False])
def test_native_early_stopping_equals_the_python_rule(monitor, restore_best):
    g = np.random.default_rng(0)
    X = g.standard_normal((5, 30))
    Y = (X[:1] + 0.8 * g.standard_normal((1, 30)) > 0).astype(float)
    Xd = g.standard_normal((5, 200))
    Yd = (Xd[:1] > 0).astype(float)
    out = []
    for extra in ([], [NoOp()]):  # native rule / Python rule (a user callback sends fit back to Python)
        net = dk.Network([5, 32, 32, 1]).initialize("he", rng=0)
        es = EarlyStopping(monitor=monitor, patience=4, min_delta=1e-4, restore_best=restore_best)
        h = net.fit(X, Y, epochs=600, learning_rate=0.01, optimizer="adam", validation=(Xd, Yd),
                    early_stopping=es, callbacks=extra, seed=0)
        out.append((rows(h), h.best_epoch, h.stopped_early, net.theta.tobytes(), es.best, es.best_epoch, es.wait))
    assert out[0] == out[1]
    assert out[0][2] or monitor == "train_cost"  # the dev metrics turn; the running cost may not in 600 epochs


def test_native_early_stopping_is_used_only_for_the_plain_class():
    class Sub(EarlyStopping):
        pass

    class Hooked(EarlyStopping):
        def on_epoch_end(self, epoch, net, history):
            return super().on_epoch_end(epoch, net, history)

    es = EarlyStopping()
    assert training._native_early_stopping(es)
    assert training._native_early_stopping(Sub())
    assert not training._native_early_stopping(Hooked())
    es.on_epoch_end = lambda *a: False
    assert not training._native_early_stopping(es)


def test_progress_bar_enters_python_at_a_human_rate(monkeypatch):
    # the native loop returns to refresh the bar at most every _Progress.REFRESH seconds (plus the last call)
    X, Y = data(m=200)
    net = dk.Network([3, 16, 1]).initialize("he", rng=0)
    calls = []
    orig = training._Progress.update

    def update(self, done, h, first):
        calls.append(done)
        return orig(self, done, h, first)

    monkeypatch.setattr(training._Progress, "update", update)
    monkeypatch.setattr(training._Progress, "REFRESH", 0.05)
    import time
    t = time.perf_counter()
    h = net.fit(X, Y, epochs=20000, learning_rate=0.01, seed=0, verbose=True, progress=False, log_every=5000)
    elapsed = time.perf_counter() - t
    assert sum(calls) == 20000 and h.epoch == [5000, 10000, 15000, 20000]
    assert len(calls) <= elapsed / 0.05 + 2



@pytest.mark.parametrize("optimizer", ["gd", "adam"])
def test_full_batch_stop_keeps_the_finished_epochs(optimizer):
    # one step per epoch: the stop is decided before the step (no snapshot, no rollback); the same epochs
    # finish as with the rollback of the multi-step path: the step that would reach stop_at_step is not kept
    X, Y = data()
    net = dk.Network([3, 8, 1]).initialize("he", rng=0)
    t0 = net.theta.copy()
    h = net.fit(X, Y, epochs=100, learning_rate=0.1, optimizer=optimizer, seed=3, _stop_at_step=6)
    assert h.interrupted and h.epoch == [1, 2, 3, 4, 5] and net.training_config["steps"] == 5
    again = dk.Network([3, 8, 1])
    again.theta = t0
    h2 = again.fit(X, Y, epochs=5, learning_rate=0.1, optimizer=optimizer, seed=3)
    assert net.theta.tobytes() == again.theta.tobytes()
    assert rows(h)["train_cost"] == rows(h2)["train_cost"]


def test_grad_norms_are_the_frobenius_norms_of_the_step():
    # full batch, one epoch: grad_norms[l] is ||dW[l]||_F of the step's gradient (blocked sums: rel. 1e-14)
    g = np.random.default_rng(1)
    X = g.standard_normal((200, 100))
    Y = (g.random((1, 100)) < 0.5).astype(float)
    net = dk.Network([200, 150, 1]).initialize("he", rng=0)  # W1 has 30,000 entries: two sum blocks
    grads = net.backward(X, Y, l2=0.1)
    want = [float(np.linalg.norm(grads[f"dW{l}"])) for l in (1, 2)]
    h = net.fit(X, Y, epochs=1, learning_rate=0.1, l2=0.1, seed=0)
    assert h.grad_norms[0] == pytest.approx(want, rel=1e-13)


def test_bce_cost_matches_libm_log1p():
    # the bce cost's log1p (activations.hpp log1p_unit, vectorised) is within 1 ulp of libm's: the cost agrees
    # with a float64 sum of math.log1p losses to rounding
    import math
    g = np.random.default_rng(3)
    X = g.standard_normal((3, 500)) * 4
    Y = (g.random((1, 500)) < 0.5).astype(float)
    net = dk.Network([3, 1], output="sigmoid", loss="bce").initialize("he", rng=0)
    z = (net.params["W1"] @ X + net.params["b1"]).ravel()
    want = math.fsum(max(v, 0.0) - v * y + math.log1p(math.exp(-abs(v))) for v, y in zip(z, Y.ravel())) / 500
    assert net.cost(X, Y) == pytest.approx(want, rel=1e-14)
