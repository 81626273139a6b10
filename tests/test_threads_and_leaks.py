"""Python threads and OpenMP threads give the results of a serial run, bit for bit; repeated calls do not leak."""
import os
import sys
import threading

import numpy as np
import pytest

import dnnkit as dk


def data(n_x=5, m=64, seed=0, n_y=1):
    g = np.random.default_rng(seed)
    X = g.standard_normal((n_x, m))
    Y = (X[:n_y] + 0.5 * X[1:1 + n_y] > 0).astype(float)
    return X, Y


def train(hidden, seed, n_threads=None, X=None, Y=None):
    X, Y = data(seed=seed) if X is None else (X, Y)
    Xd, Yd = data(seed=seed + 100)
    net = dk.Network([5, 16, 8, 1], hidden=hidden).initialize(rng=seed)
    h = net.fit(X, Y, epochs=12, learning_rate=0.05, batch_size=16, optimizer="adam", keep_prob=0.8, l2=0.1,
                validation=(Xd, Yd), early_stopping=dk.EarlyStopping(patience=3), seed=seed, n_threads=n_threads)
    return net.theta.tobytes(), tuple(h.train_cost), tuple(h.dev_cost), h.best_epoch


def check(hidden, seed, n_threads=None):
    X, Y = data(seed=seed, m=24)
    net = dk.Network([5, 16, 8, 1], hidden=hidden).initialize(rng=seed)
    r = dk.gradcheck(net, X, Y, l2=0.3, l1=0.05, keep_prob=0.8, seed=seed, n_threads=n_threads)
    d = dk.gradcheck(net, X, Y, mode="directional", n_directions=3, rng=seed, n_threads=n_threads)
    return r.approx.tobytes(), r.flags.tobytes(), r.verdict, d.approx.tobytes()


def in_threads(fn, args_list):
    out = [None] * len(args_list)
    errors = []

    def work(i, args):
        try:
            out[i] = fn(*args)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    ts = [threading.Thread(target=work, args=(i, a)) for i, a in enumerate(args_list)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=300)  # bounded: a hung thread fails the test instead of the run
    assert not any(t.is_alive() for t in ts), "a thread did not finish"
    assert not errors, errors
    return out


JOBS = [("relu", 1), ("tanh", 2), ("sigmoid", 3), ("leaky_relu", 4), ("relu", 5), ("tanh", 6)]


def test_python_threads_training_separate_networks_equal_serial():
    serial = [train(h, s) for h, s in JOBS]
    assert in_threads(train, JOBS) == serial


def test_python_threads_checking_separate_networks_equal_serial():
    serial = [check(h, s) for h, s in JOBS]
    assert in_threads(check, JOBS) == serial


def test_python_threads_sharing_one_network_equal_serial():
    X, Y = data(m=32)
    net = dk.Network([5, 16, 8, 1], hidden="tanh").initialize(rng=0)
    t0 = net.theta.tobytes()

    def use(kind, k):
        if kind == "cost":
            return net.cost(X, Y, l2=0.1 * k, keep_prob=0.8, seed=k)
        if kind == "check":
            return dk.gradcheck(net, X, Y, l2=0.1 * k).approx.tobytes()
        if kind == "predict":
            return net.predict_proba(X).tobytes() if hasattr(net, "predict_proba") else net.predict(X).tobytes()
        return float(np.sum(net.backward(X, Y, keep_prob=0.8, seed=k)["dW1"]))  # read inside the call's result

    jobs = [(kind, k) for k in range(3) for kind in ("cost", "check", "predict")]
    serial = [use(*j) for j in jobs]
    assert in_threads(use, jobs * 2) == serial * 2
    assert net.theta.tobytes() == t0


@pytest.mark.parametrize("n", [2, 7])
def test_openmp_threads_give_bit_identical_results(n):
    one = ([train(h, s, n_threads=1) for h, s in JOBS[:4]], [check(h, s, n_threads=1) for h, s in JOBS[:4]],
           dk.dropout_mask((37, 129), 0.7, seed=3, step=5, layer=2).tobytes())
    dk.set_num_threads(n)
    try:
        many = ([train(h, s) for h, s in JOBS[:4]], [check(h, s) for h, s in JOBS[:4]],
                dk.dropout_mask((37, 129), 0.7, seed=3, step=5, layer=2).tobytes())
    finally:
        dk.set_num_threads(0)
    assert many == one
    assert [train(h, s, n_threads=n) for h, s in JOBS[:4]] == one[0]


# ------------------------------------------------------------------------------------ leaks

def _rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


@pytest.mark.skipif(not sys.platform.startswith("linux") or not os.path.exists("/proc/self/status"),
                    reason="RSS from /proc/self/status")
def test_ten_thousand_calls_do_not_grow_memory():
    X, Y = data(n_x=3, m=8)
    net = dk.Network([3, 4, 1], hidden="tanh").initialize(rng=0)

    def round_(i):
        net.forward(X, keep_prob=0.8, seed=i)
        net.backward(X, Y, l2=0.1, keep_prob=0.8, seed=i)
        net.fit(X, Y, epochs=1, learning_rate=1e-3, seed=i, optimizer="adam")
        dk.gradcheck(net, X, Y, l2=0.1)

    for i in range(200):  # warm-up: allocator pools, caches, lazy imports
        round_(i)
    before = _rss_kb()
    for i in range(2500):  # 4 calls each: 10,000 calls
        round_(i)
    grown = _rss_kb() - before
    # a leak of even 100 bytes per call would be 1 MB; the bound is generous for allocator noise
    assert grown < 8 * 1024, f"RSS grew by {grown} kB over 10,000 calls"


def _import_env(extra):
    """OMP_WAIT_POLICY / GOMP_SPINCOUNT as a fresh interpreter sees them after `import dnnkit`."""
    import subprocess

    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env.update(extra)
    code = "import os, dnnkit; print(os.environ.get('OMP_WAIT_POLICY'), os.environ.get('GOMP_SPINCOUNT'))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return tuple(out.stdout.split())


def test_import_sets_passive_wait_with_a_short_spin():
    assert _import_env({}) == ("PASSIVE", "3000")


@pytest.mark.parametrize("extra,expected", [
    ({"OMP_WAIT_POLICY": "ACTIVE"}, ("ACTIVE", "None")),  # the user's policy: no spin count added
    ({"OMP_WAIT_POLICY": "PASSIVE"}, ("PASSIVE", "None")),
    ({"GOMP_SPINCOUNT": "0"}, ("PASSIVE", "0")),  # the user's spin count kept
])
def test_import_keeps_the_users_openmp_wait_settings(extra, expected):
    assert _import_env(extra) == expected
