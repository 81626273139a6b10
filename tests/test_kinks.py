"""Kink-crossing coordinates are verified one-sided per example (dnnkit.kinks), not dropped: the issue's case
(examples that switch every layer-1 unit off put Z2 = b2 = 0 there, so every b2 coordinate crosses a kink) must be
"correct" for the right db2 and "bug" for a doubled one; what cannot be verified makes the verdict "unverified".
The gradients under test come from the test-side learner backprop (tests/learner.py)."""
import numpy as np
import pytest

import dnnkit as dk

import learner

PAIRS = [("sigmoid", "bce", 1), ("softmax", "ce", 3), ("linear", "mse", 2), ("sigmoid", "mse", 1)]


def issue_case(output="sigmoid", loss="bce", n_out=1, hidden="relu", m=10, seed=0):
    """[2, 4, 3, n_out]: examples 0..2 switch every layer-1 unit off (x far negative along W1's rows), b2 = 0."""
    rng = np.random.default_rng(seed)
    net = dk.Network([2, 4, 3, n_out], hidden=hidden, output=output, loss=loss)
    net.initialize(rng=seed + 1)
    W1 = np.array([[1.0, 0.5], [0.8, -0.2], [1.2, 0.1], [0.6, 0.4]])
    net.params["W1"][...] = W1
    net.params["b1"][...] = 0.1
    net.params["b2"][...] = 0.0
    X = rng.standard_normal((2, m))
    X[:, :3] = [[-5.0, -6.0, -7.0], [0.0, 0.0, 0.0]]      # W1 x + b1 < 0 for every unit: A1 = 0, Z2 = b2 = 0
    if loss == "bce":
        Y = (rng.random((n_out, m)) < 0.5).astype(float)
    elif loss == "ce":
        Y = np.eye(n_out)[:, rng.integers(0, n_out, m)]
    elif output == "sigmoid":
        Y = rng.uniform(0, 1, (n_out, m))
    else:
        Y = rng.standard_normal((n_out, m))
    assert np.all(net.params["W1"] @ X[:, :3] + net.params["b1"] < 0)
    if hidden == "leaky_relu":
        # leaky units are never off (A1 = alpha Z1): put layer-2 unit 0 of example 0 on its kink instead (one unit:
        # several at once, moved in opposite directions by one coordinate, would cross on both sides)
        A1 = learner.g("leaky_relu", net.params["W1"] @ X + net.params["b1"], net.alpha)
        net.params["b2"][0] = -(net.params["W2"][0] @ A1[:, 0])
    return net, X, Y


@pytest.mark.parametrize("output,loss,n_out", PAIRS, ids=[f"{o}-{lo}" for o, lo, _ in PAIRS])
@pytest.mark.parametrize("hidden", ["relu", "leaky_relu"])
def test_b2_behind_kinks_verified_and_doubled_db2_caught(output, loss, n_out, hidden):
    net, X, Y = issue_case(output, loss, n_out, hidden)
    p = net.get_params()
    good = learner.backprop(X, Y, p, hidden, output, loss, alpha=net.alpha)
    r = dk.gradcheck(net, X, Y, grads=good)
    b2 = next(c for c in r.components if c.name == "b2")
    n_k = 3 if hidden == "relu" else 1
    assert b2.n_kinks == n_k and b2.n_one_sided == n_k and r.n_unverified == 0, str(r)
    assert r.verdict == "correct" and float(r) < 1e-8 and b2.difference < 5e-8, str(r)
    assert r.difference > 1e3 * float(r)   # the plain centered difference is meaningless there
    bad = dict(good, db2=2 * good["db2"])
    r = dk.gradcheck(net, X, Y, grads=bad)
    b2 = next(c for c in r.components if c.name == "b2")
    assert r.verdict == "bug" and b2.verdict == "bug" and "x2" in b2.finding, str(r)
    assert [c.name for c in r.components if c.verdict != "correct"] == ["b2"]


def test_kinks_with_l2_l1_and_dropout_masks():
    net, X, Y = issue_case()
    rng = np.random.default_rng(4)
    D = {1: (rng.random((4, 10)) < 0.8).astype(float), 2: (rng.random((3, 10)) < 0.8).astype(float)}
    good = learner.backprop(X, Y, net.get_params(), lambd=0.3, l1=0.2, keep_prob=0.8, D=D)
    kw = dict(l2=0.3, l1=0.2, keep_prob=0.8, masks=[D[1], D[2]])
    r = dk.gradcheck(net, X, Y, grads=good, **kw)
    assert r.n_one_sided >= 1 and r.verdict == "correct", str(r)
    bad = dict(good, db2=good["db2"] + 1e-3)
    assert dk.gradcheck(net, X, Y, grads=bad, **kw).verdict != "correct"


def test_net_backward_behind_kinks_and_directional_mode():
    net, X, Y = issue_case()
    assert dk.gradcheck(net, X, Y).verdict == "correct"
    # a random direction in b2 that moves the three units at their kinks (Z2 = 0) some up, some down: every kinked
    # example crosses on both sides, so that direction cannot be verified; one that moves all three the same way
    # (probability 1/4) verifies on the other side. Which of the 3 drawn directions is which depends on the drawn
    # values (since the native draws of issue 9, not NumPy's), so it is read off the directions themselves.
    r = dk.gradcheck(net, X, Y, mode="directional", n_directions=3, rng=1)
    b2 = next(c for c in r.components if c.name == "b2")
    sl = slice(*next((s, e) for name, s, e, *_ in r._layout.comps if name == "b2"))
    qs = [q for q in range(r.approx.size) if r._dir_components[q] == "b2"]
    mixed = sum(1 for q in qs if len(set(np.sign(r._dir_vectors[q][sl]))) > 1)
    assert mixed >= 1  # (so the check below is about unverifiable directions)
    assert r.verdict == "unverified" and b2.n_unverified == mixed and b2.n_one_sided == 3 - mixed
    # one unit on its kink: every direction moves it one way, and the other side verifies
    net, X, Y = issue_case(hidden="leaky_relu")
    r = dk.gradcheck(net, X, Y, mode="directional", n_directions=3, rng=1)
    b2 = next(c for c in r.components if c.name == "b2")
    assert b2.n_kinks == 3 and b2.n_one_sided == 3 and r.verdict == "correct", str(r)
    good = {k: v.copy() for k, v in net.backward(X, Y).items()}
    r = dk.gradcheck(net, X, Y, grads=dict(good, db2=2 * good["db2"]), mode="directional", n_directions=3, rng=1)
    assert r.verdict == "bug", str(r)


def test_both_sides_crossing_is_unverified_never_correct():
    # a layer-2 unit 1e-9 above its kink for one example, moved both ways by one W1 coordinate through two
    # layer-2 units of opposite weights: that example crosses a kink on both sides of every usable step
    rng = np.random.default_rng(3)
    net = dk.Network([2, 2, 2, 1], hidden="relu")
    net.initialize(rng=3)
    X = rng.standard_normal((2, 6))
    net.params["W1"][...] = [[1.0, 0.0], [0.0, 1.0]]
    net.params["b1"][...] = 5.0
    net.params["W2"][...] = [[1.0, 0.0], [-1.0, 0.0]]
    Z2 = net.params["W2"] @ (X + 5.0)
    net.params["b2"][...] = (-Z2[:, :1] + 1e-9)
    Y = (rng.random((1, 6)) < 0.5).astype(float)
    r = dk.gradcheck(net, X, Y)
    assert r.n_unverified >= 1 and r.verdict == "unverified", str(r)
    assert "both sides" in r.unverified_reason and "UNVERIFIED" in str(r)
    assert r.n_verified + r.n_unverified == r.n_checked and float(r) < 1e-7
    d = r.to_dict()
    assert d["n_unverified"] == r.n_unverified and d["verdict"] == "unverified" and d["unverified_reason"]
    unv = [c for c in r.components if c.n_unverified]
    assert unv and all(c.verdict == "unverified" for c in unv)
    assert not r   # bool(report) is True only for "correct"
    with pytest.raises(AssertionError):
        dk.assert_gradients_close(net, X, Y)


def test_merge_keeps_one_sided_values_and_reasons():
    net, X, Y = issue_case()
    good = {k: v.copy() for k, v in net.backward(X, Y).items()}
    bad = dict(good, db2=2 * good["db2"])
    n = net.n_params
    for grads, verdict in ((good, "correct"), (bad, "bug")):
        parts = [dk.gradcheck(net, X, Y, grads=grads, indices=range(a, min(n, a + 7))) for a in range(0, n, 7)]
        merged = dk.GradcheckReport.merge(parts)
        whole = dk.gradcheck(net, X, Y, grads=grads)
        assert merged.verdict == whole.verdict == verdict
        assert merged.n_one_sided == whole.n_one_sided == 3
        np.testing.assert_array_equal(merged.kink_approx, whole.kink_approx)
        assert float(merged) == float(whole)


def test_relu_ge_behind_kinks_is_named():
    net, X, Y = issue_case()
    g = learner.backprop(X, Y, net.get_params(), bug="relu_ge", at=2)
    r = dk.gradcheck(net, X, Y, grads=g)
    assert r.verdict == "bug" and [(e.mistake, e.layer) for e in r.mistakes] == [("relu_ge", 2)], str(r)


def test_sharded_check_keeps_one_sided_values_and_named_mistakes():
    from concurrent.futures import ThreadPoolExecutor

    net, X, Y = issue_case()
    good = {k: v.copy() for k, v in net.backward(X, Y).items()}
    bad = learner.backprop(X, Y, net.get_params(), bug="no_derivative", at=2)
    with ThreadPoolExecutor(2) as ex:
        for grads in (good, bad):
            whole = dk.gradcheck(net, X, Y, grads=grads)
            shard = dk.gradcheck(net, X, Y, grads=grads, executor=ex, n_shards=3, progress=False)
            assert shard.verdict == whole.verdict and float(shard) == float(whole)
            assert shard.n_one_sided == whole.n_one_sided and shard.n_unverified == whole.n_unverified
            assert [e.mistake for e in shard.mistakes] == [e.mistake for e in whole.mistakes]
            assert [c.finding for c in shard.components] == [c.finding for c in whole.components]
    assert [e.mistake for e in whole.mistakes] == ["deriv_missing"]


def test_work_budget_follows_the_net_size_only():
    from dnnkit import kinks
    small = kinks.work_budget([2, 20, 3, 1], 300)
    big = kinks.work_budget([784, 128, 64, 10], 256)
    assert kinks.MIN_VERIFIED <= big < small <= kinks.MAX_VERIFIED
    assert kinks.work_budget([784, 128, 64, 10], 64) > big  # fewer examples: cheaper forward passes
    assert kinks.work_budget([4000, 4000, 4000, 10], 4096) == kinks.MIN_VERIFIED
    assert kinks.work_budget([784, 128, 64, 10], 256) == big  # no clock: the same every time


def test_zero_initialized_relu_net_every_coordinate_flagged_stays_bounded():
    """A Network before initialize() has all-zero parameters: every ReLU unit sits on its kink, so nearly every
    coordinate is flagged. The check must neither build a dense unit vector per flagged coordinate (1e5 of 1e5
    entries would not fit in memory) nor verify more than the work budget: the rest are unverified, and say why."""
    from dnnkit import kinks
    dims, m = [300, 60, 10], 16
    net = dk.Network(dims, hidden="relu", output="softmax")
    g = np.random.default_rng(0)
    X = g.standard_normal((dims[0], m))
    Y = np.eye(10)[:, g.integers(0, 10, m)]
    r = dk.gradcheck(net, X, Y)
    budget = kinks.work_budget(dims, m)
    n_flagged = int(np.count_nonzero(r.flags))
    assert n_flagged > budget  # the case under test: more kink coordinates than the budget
    assert r.verdict == "unverified" and "budget for this net's size" in r.unverified_reason
    # verify() indexes only the first `budget` vectors: a sequence that fails beyond them is never read there
    class Guard:
        def __init__(self, n, k):
            self.n, self.k = n, k
        def __len__(self):
            return self.k + 5
        def __getitem__(self, q):
            assert q < self.k, q
            e = np.zeros(self.n)
            e[q] = 1.0
            return e
    from dnnkit.gradient_check import _check_network_inputs
    prob = _check_network_inputs(net, X, Y, 0.0, 0.0, 1.0, None, None, 0)
    vals, _, why = kinks.verify(prob, Guard(net.n_params, 3), budget=3)
    assert np.isnan(vals[3:]).all() and all("not attempted" in w for w in why[3:])
