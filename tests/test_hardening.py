"""Issue 12's findings, each pinned: key errors of parameter / gradient dicts, masks where keep_prob is 1,
shape statements for a transposed gradient block, a callback that raises, Ctrl-C during a gradient check."""
import numpy as np
import pytest

import dnnkit as dk
from dnnkit import reference as ref


def small(dims=(3, 5, 4, 1), m=7, seed=0):
    g = np.random.default_rng(seed)
    X = g.standard_normal((dims[0], m))
    Y = (g.random((dims[-1], m)) > 0.5).astype(float)
    net = dk.Network(list(dims), hidden="tanh").initialize("glorot", rng=seed)
    return net, X, Y


# ------------------------------------------------------------------------------------ dict keys

def _assert_key_error(ei, key):
    assert isinstance(ei.value, KeyError) and isinstance(ei.value, ValueError)
    assert isinstance(ei.value, dk.ParameterKeyError) and ei.value.key == key
    assert repr(key) in str(ei.value) and not str(ei.value).startswith('"')  # readable, not KeyError's repr


@pytest.mark.parametrize("change, key", [("extra", "W9"), ("missing", "b2"), ("lower", "w1")],
                         ids=["extra-W9", "missing-b2", "typo-w1"])
def test_params_dict_with_a_wrong_key_names_it(change, key):
    net, X, Y = small()
    before = net.theta.copy()
    p = net.get_params()
    if change == "extra":
        p["W9"] = np.ones((2, 2))
    elif change == "missing":
        del p["b2"]
    else:
        p["w1"] = p.pop("W1")
        key = "W1"  # the missing one is reported first
    with pytest.raises(KeyError) as ei:
        net.set_params(p)
    _assert_key_error(ei, key)
    with pytest.raises(ValueError) as ei:
        dk.Network([3, 5, 4, 1], params=p)
    _assert_key_error(ei, key)
    assert net.theta.tobytes() == before.tobytes()
    if change == "extra":
        with pytest.raises(dk.ParameterKeyError) as ei:
            dk.params_to_vector(p)
        _assert_key_error(ei, "W9")


@pytest.mark.parametrize("change, key", [("extra", "dW9"), ("missing", "db3"), ("both", "W1")],
                         ids=["extra-dW9", "missing-db3", "dW1-and-W1"])
def test_grads_dict_with_a_wrong_key_names_it(change, key):
    net, X, Y = small()
    g = {k: v.copy() for k, v in net.backward(X, Y).items()}
    if change == "extra":
        g["dW9"] = np.zeros((2, 2))
    elif change == "missing":
        del g["db3"]
    else:
        g["W1"] = g["dW1"]
    with pytest.raises(KeyError) as ei:
        dk.gradcheck(net, X, Y, grads=g)
    _assert_key_error(ei, key)
    # the cost-function form: params' keys decide which gradients must be there
    params = net.get_params()
    cost = lambda p: float(np.sum(p["W1"] ** 2))  # noqa: E731
    with pytest.raises(ValueError) as ei:
        dk.gradcheck(cost, params, g)
    _assert_key_error(ei, key)


def test_course_style_grads_with_dA_and_dZ_are_accepted():
    net, X, Y = small()
    g = {k: v.copy() for k, v in net.backward(X, Y).items()}
    course = dict(g, dA0=np.zeros((3, 7)), dA1=np.zeros((5, 7)), dZ3=np.zeros((1, 7)))
    assert dk.gradcheck(net, X, Y, grads=course).verdict == "correct"
    np.testing.assert_array_equal(dk.params_to_vector(course, prefix="d"), net.grad_vector)


# ------------------------------------------------------------------------------------ masks and keep_prob 1

def test_all_ones_mask_where_keep_prob_is_1_is_accepted():
    net, X, Y = small(m=6)
    D1 = (np.random.default_rng(1).random((5, 6)) < 0.8).astype(float)
    ones = np.ones((4, 6))
    kp = [1.0, 0.8, 1.0]  # input, hidden 1, hidden 2
    a = net.forward(X, keep_prob=kp, masks=[np.ones((3, 6)), D1, ones])[0]
    b = net.forward(X, keep_prob=kp, masks=[None, D1, None])[0]
    assert a.tobytes() == b.tobytes()
    ga = {k: v.copy() for k, v in net.backward(X, Y, keep_prob=kp, masks=[D1, ones]).items()}
    gb = net.backward(X, Y, keep_prob=kp, masks=[D1, None])
    assert all(ga[k].tobytes() == gb[k].tobytes() for k in gb)
    r = dk.gradcheck(net, X, Y, keep_prob=kp, masks=[D1, ones])
    assert r.verdict == "correct"
    # the reference (course code draws D for every layer) agrees
    ra = ref.forward_propagation(X, net.get_params(), "tanh", keep_prob=kp, masks=[None, D1, ones])[0]
    np.testing.assert_allclose(ra, a, rtol=1e-12, atol=1e-14)


def test_mask_with_zeros_where_keep_prob_is_1_is_refused_with_the_reason():
    net, X, Y = small(m=6)
    D1 = np.ones((5, 6))
    D2 = np.ones((4, 6))
    D2[2, 3] = 0
    for call in (lambda: net.forward(X, keep_prob=[0.8, 1.0], masks=[D1, D2]),
                 lambda: net.backward(X, Y, keep_prob=[0.8, 1.0], masks=[D1, D2]),
                 lambda: dk.gradcheck(net, X, Y, keep_prob=[0.8, 1.0], masks=[D1, D2])):
        with pytest.raises(ValueError, match=r"masks\[2\] drops units \(a 0 at \(2, 3\)\).*keep_prob is 1"):
            call()
    with pytest.raises(ValueError, match="keep_prob is 1"):
        ref.forward_propagation(X, net.get_params(), "tanh", keep_prob=[0.8, 1.0], masks=[D1, D2])


# ------------------------------------------------------------------------------------ transposed block

def test_transposed_block_states_the_shape_got_and_expected():
    net, X, Y = small()
    g = {k: v.copy() for k, v in net.backward(X, Y).items()}
    g["dW2"] = np.ascontiguousarray(g["dW2"].T)  # (5, 4) instead of (4, 5)
    row = next(c for c in dk.gradcheck(net, X, Y, grads=g).components if c.name == "W2")
    assert "transpose" in row.finding  # today's pattern, or the named mistake (which keeps it in row.pattern)
    assert "grads['dW2'] has shape (5, 4), expected (4, 5)" in row.finding
    # a flat vector holding dW2.T's elements: no given shape, but still the transpose's shape and the expected one
    flat = net.grad_vector.copy()
    sl = slice(3 * 5 + 5, 3 * 5 + 5 + 4 * 5)
    flat[sl] = net.grads["dW2"].T.reshape(-1)
    row = next(c for c in dk.gradcheck(net, X, Y, grads=flat).components if c.name == "W2")
    text = row.finding + " " + (getattr(row, "pattern", None) or "")
    assert "transpose" in row.finding and "shape (5, 4)" in text and "expected shape (4, 5)" in text


# ------------------------------------------------------------------------------------ a callback that raises

class Boom(Exception):
    pass


class RaiseAt(dk.callbacks.Callback):
    def __init__(self, epoch, hook="on_epoch_end"):
        self.at, self.hook = epoch, hook

    def on_epoch_end(self, epoch, net, history):
        if self.hook == "on_epoch_end" and epoch == self.at:
            raise Boom(f"at {epoch}")
        return False

    def on_train_end(self, net, history):
        if self.hook == "on_train_end":
            raise Boom("at the end")


def _separable(m=64, seed=0):
    g = np.random.default_rng(seed)
    X = g.standard_normal((4, m))
    return X, (X[:1] + 0.3 * X[1:2] > 0).astype(float)


def test_a_callback_that_raises_leaves_the_last_finished_epoch():
    X, Y = _separable()
    net = dk.Network([4, 6, 1]).initialize("he", rng=0)
    t0 = net.theta.copy()
    with pytest.raises(Boom) as ei:
        net.fit(X, Y, epochs=50, learning_rate=0.1, batch_size=16, optimizer="adam", seed=2, log_every=2,
                callbacks=[RaiseAt(6)])
    h = ei.value.history
    assert h.epoch == [2, 4, 6] and net.training_config["epochs_run"] == 6
    assert net.training_config["error"] == "Boom: at 6"
    again = dk.Network([4, 6, 1])
    again.theta = t0
    again.fit(X, Y, epochs=6, learning_rate=0.1, batch_size=16, optimizer="adam", seed=2)
    assert net.theta.tobytes() == again.theta.tobytes()


def test_a_callback_that_raises_still_restores_the_best_epoch():
    X, Y = _separable()
    Xd, Yd = _separable(40, seed=1)
    for hook in ("on_epoch_end", "on_train_end"):
        net = dk.Network([4, 6, 1]).initialize("he", rng=0)
        es = dk.EarlyStopping(patience=1000, restore_best=True)
        with pytest.raises(Boom) as ei:
            # lr so large that the dev cost rises again: the best epoch is not the last one
            net.fit(X, Y, epochs=30, learning_rate=10.0, validation=(Xd, Yd), early_stopping=es, seed=0,
                    callbacks=[RaiseAt(20, hook)])
        h = ei.value.history
        assert h.best_epoch == es.best_epoch and es.best_theta is not None and es.best_epoch < 20
        assert net.theta.tobytes() == es.best_theta.tobytes()
        assert len(h) == (20 if hook == "on_epoch_end" else 30)


def test_a_callback_that_raises_at_the_start_changes_nothing():
    X, Y = _separable()
    net = dk.Network([4, 6, 1]).initialize("he", rng=0)
    t0 = net.theta.copy()

    class BadBegin(dk.callbacks.Callback):
        def on_train_begin(self, net, history):
            raise Boom("begin")

    with pytest.raises(Boom):
        net.fit(X, Y, epochs=5, learning_rate=0.1, callbacks=[BadBegin()], seed=0)
    assert net.theta.tobytes() == t0.tobytes() and net.training_config["epochs_run"] == 0


# ------------------------------------------------------------------------------------ Ctrl-C during gradcheck

from dnnkit import gradient_check as gcm  # noqa: E402


def _bits(r):
    return (r.indices.tobytes(), r.approx.tobytes(), r.grad.tobytes(), r.flags.tobytes())


@pytest.mark.parametrize("case", ["relu-l1", "tanh-dropout", "leaky-softmax"])
def test_chunked_check_equals_one_call_bit_for_bit(case, monkeypatch):
    g = np.random.default_rng(4)
    if case == "relu-l1":
        dims, kw, net = [6, 9, 7, 1], dict(l1=0.3, l2=0.2), dk.Network([6, 9, 7, 1])
    elif case == "tanh-dropout":
        dims, kw, net = [5, 12, 8, 1], dict(keep_prob=0.7, seed=3), dk.Network([5, 12, 8, 1], hidden="tanh")
    else:
        dims, kw = [4, 20, 3], dict(l2=0.1)
        net = dk.Network(dims, hidden="leaky_relu", output="softmax")
    net.initialize(rng=1)
    X = g.standard_normal((dims[0], 11))
    Y = np.eye(dims[-1])[:, g.integers(0, dims[-1], 11)] if dims[-1] > 1 else (g.random((1, 11)) > 0.5) * 1.0
    one = dk.gradcheck(net, X, Y, **kw)
    monkeypatch.setattr(gcm, "_CHUNK_FIRST", 7)
    monkeypatch.setattr(gcm, "_CHUNK_SETUP_FACTOR", 0)
    monkeypatch.setattr(gcm, "_CHUNK_SECONDS", 1e-12)  # every later chunk: the minimum (64)
    calls = []
    real = dk._core.gradcheck_coords
    monkeypatch.setattr(dk._core, "gradcheck_coords", lambda *a, **k: calls.append(1) or real(*a, **k))
    many = dk.gradcheck(net, X, Y, **kw)
    assert len(calls) >= 3  # 7, 64, and the rest
    assert _bits(one) == _bits(many) and one.engine_stats == many.engine_stats and many.complete


def _interrupt_on_call(monkeypatch, k):
    real = dk._core.gradcheck_coords
    n = [0]

    def fake(*a, **kw):
        n[0] += 1
        if n[0] == k:
            raise KeyboardInterrupt  # what the engine raises when its signal poll sees Ctrl-C
        return real(*a, **kw)

    monkeypatch.setattr(dk._core, "gradcheck_coords", fake)


def test_interrupted_check_returns_the_finished_part_marked_incomplete(monkeypatch):
    net, X, Y = small((6, 20, 12, 1), m=9)
    g = {k: v.copy() for k, v in net.backward(X, Y).items()}
    g["db1"] *= 2  # a bug in a block the partial check covers in part (b1 is at offsets 120..139)
    full = dk.gradcheck(net, X, Y, grads=g)
    monkeypatch.setattr(gcm, "_CHUNK_SETUP_FACTOR", 0)
    monkeypatch.setattr(gcm, "_CHUNK_SECONDS", 1e-12)
    _interrupt_on_call(monkeypatch, 3)
    part = dk.gradcheck(net, X, Y, grads=g)
    assert not part.complete and not bool(part)
    np.testing.assert_array_equal(part.indices, np.arange(64 + 64))
    np.testing.assert_array_equal(part.missing_indices, np.arange(128, net.n_params))
    assert part.approx.tobytes() == full.approx[:128].tobytes()
    assert part.verdict == "bug" and [c.name for c in part.components] == ["W1", "b1"]
    text = str(part)
    assert f"INCOMPLETE: interrupted with {net.n_params - 128} requested coordinates not checked" in text
    assert part.to_dict()["complete"] is False and part.to_dict()["n_missing"] == net.n_params - 128
    _interrupt_on_call(monkeypatch, 3)
    with pytest.raises(AssertionError, match="INCOMPLETE"):  # correct gradients, but only partly verified
        dk.assert_gradients_close(net, X, Y)
    monkeypatch.undo()
    # resume: check the rest and merge -> the uninterrupted report, complete
    rest = dk.gradcheck(net, X, Y, grads=g, indices=part.missing_indices)
    merged = part.merge(rest)
    assert merged.complete and _bits(merged) == _bits(full) and merged.verdict == full.verdict


def test_interrupt_before_any_chunk_finished_propagates(monkeypatch):
    net, X, Y = small()
    _interrupt_on_call(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        dk.gradcheck(net, X, Y)


def test_interrupted_cost_function_check_is_partial_too():
    net, X, Y = small((6, 20, 12, 1))
    params = net.get_params()
    grads = {k: v.copy() for k, v in net.backward(X, Y).items()}
    calls = [0]

    def cost(p):
        calls[0] += 1
        if calls[0] > 2 * 64 + 2 * 10:  # inside the second chunk
            raise KeyboardInterrupt
        return float(dk.reference.compute_cost(
            dk.reference.forward_propagation(X, p, "tanh")[0], Y, p, "bce"))

    r = dk.gradcheck(cost, params, grads)
    assert not r.complete and r.n_checked == 64 and r.missing_indices.size == net.n_params - 64


def test_ctrl_c_during_gradcheck_with_a_real_signal(monkeypatch):
    # a real SIGINT (interrupt_main, with our own handler installed) timed from the engine's progress: it is made
    # pending as the second chunk starts, so the engine's poll (or the interpreter, just before the call) sees it:
    # the report of the finished chunks comes back. Bounded: the check has a few thousand coordinates at most.
    import _thread

    from _signals import python_sigint

    net, X, Y = small((20, 40, 40, 1), m=50)
    monkeypatch.setattr(gcm, "_CHUNK_SETUP_FACTOR", 0)
    monkeypatch.setattr(gcm, "_CHUNK_SECONDS", 0.05)
    real = dk._core.gradcheck_coords
    calls = []

    def watched(*a, **kw):
        calls.append(1)
        if len(calls) == 2:
            # tanh checks now take ~1 ms a chunk (the smooth path): a timer could fire after the check ended, so
            # the signal is made pending right here, as the second chunk starts; the engine's first poll (or the
            # interpreter, just before the call) sees it
            _thread.interrupt_main()
        return real(*a, **kw)

    monkeypatch.setattr(dk._core, "gradcheck_coords", watched)
    with python_sigint():
        r = dk.gradcheck(net, X, Y)
    assert not r.complete and 64 <= r.n_checked < net.n_params
    assert r.n_checked + r.missing_indices.size == net.n_params and r.verdict == "correct"
    assert r.approx.tobytes() == dk.gradcheck(net, X, Y, indices=r.indices).approx.tobytes()


def test_cli_gradcheck_prints_the_partial_report_and_exits_130():
    # the child installs Python's SIGINT handler itself (it may inherit SIGINT ignored from this test run) and
    # says on stderr when the first engine chunk has finished; the test then sends SIGINT
    import os
    import signal
    import subprocess
    import sys
    import threading

    code = ("import signal, sys\n"
            "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
            "import dnnkit, dnnkit.gradient_check as g\n"
            "g._CHUNK_SECONDS = 0.05; g._CHUNK_SETUP_FACTOR = 0\n"
            "real, n = dnnkit._core.gradcheck_coords, [0]\n"
            "def watched(*a, **k):\n"
            "    n[0] += 1\n"
            "    if n[0] == 2: print('chunk', file=sys.stderr, flush=True)  # the first one has finished\n"
            "    return real(*a, **k)\n"
            "dnnkit._core.gradcheck_coords = watched\n"
            "from dnnkit.cli import main\n"
            "sys.exit(main(['gradcheck', '--layers', '40,80,80,1', '--hidden', 'tanh', '--m', '200']))\n")
    env = dict(os.environ)
    src = os.path.dirname(os.path.dirname(os.path.abspath(dk.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    p = subprocess.Popen([sys.executable, "-u", "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=env)
    watchdog = threading.Timer(120, p.kill)  # bounded even if the child never reports
    watchdog.start()
    try:
        line = p.stderr.readline()
        assert line == "chunk\n", line + p.stderr.read()
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=120)
    finally:
        watchdog.cancel()
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 130, (p.returncode, out, err)
    assert "INCOMPLETE: interrupted with" in out and "difference =" in out
    assert "coordinates not checked" in err and "Traceback" not in err
