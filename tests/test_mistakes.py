"""Naming the mistake: each mistake is planted in a learner's backprop written in tests/learner.py (not produced
by dnnkit) and dk.gradcheck must name exactly that mistake, in that layer, with the layers below reported as
inherited; on correct gradients no hypothesis may ever fire."""
import numpy as np
import pytest

import dnnkit as dk
from dnnkit import mistakes as M
from dnnkit.gradient_check import _check_network_inputs

import learner


def case(dims, hidden="relu", output="sigmoid", loss="bce", m=7, seed=0, keep_prob=1.0):
    rng = np.random.default_rng(seed)
    net = dk.Network(dims, hidden=hidden, output=output, loss=loss)
    net.initialize(rng=seed + 1)
    for l in range(1, len(dims)):          # nonzero biases, so Z[l-1] and A[l-1] differ for every hidden unit
        net.params[f"b{l}"][...] = 0.1 * rng.standard_normal((dims[l], 1))
    X = rng.standard_normal((dims[0], m))
    if loss == "bce":
        Y = (rng.random((dims[-1], m)) < 0.5).astype(float)
    elif loss == "ce":
        Y = np.eye(dims[-1])[:, rng.integers(0, dims[-1], m)]
    else:
        Y = rng.standard_normal((dims[-1], m))
    D = None
    if keep_prob < 1:
        D = {l: (rng.random((dims[l], m)) < keep_prob).astype(float) for l in range(1, len(dims) - 1)}
    return net, X, Y, D


def run(net, X, Y, D, grads, keep_prob=1.0, **kw):
    masks = None if D is None else [D[l] for l in range(1, net.L)]
    return dk.gradcheck(net, X, Y, grads=grads, keep_prob=keep_prob, masks=masks, **kw)


# (learner bug, dnnkit name, layer, architecture options, components of the named layer, inherited components)
PLANTED = [
    ("no_derivative", "deriv_missing", 2, {}, ["W2", "b2"], ["W1", "b1"]),
    ("derivative_twice", "deriv_twice", 1, {"hidden": "tanh"}, ["W1", "b1"], []),
    ("derivative_twice", "deriv_twice", 2, {"hidden": "leaky_relu"}, ["W2", "b2"], ["W1", "b1"]),
    ("derivative_of_A", "deriv_from_A", 2, {"hidden": "sigmoid"}, ["W2", "b2"], ["W1", "b1"]),
    ("A_formula_on_Z", "deriv_formula_on_Z", 2, {"hidden": "tanh"}, ["W2", "b2"], ["W1", "b1"]),
    ("other_layer_mask", "deriv_wrong_layer", 2, {"other": 1}, ["W2", "b2"], ["W1", "b1"]),
    ("extra_output_derivative", "output_extra_deriv", 3, {}, ["W3", "b3"], ["W1", "b1", "W2", "b2"]),
    ("extra_output_derivative", "output_extra_deriv", 3, {"output": "softmax", "loss": "ce", "n_out": 3},
     ["W3", "b3"], ["W1", "b1", "W2", "b2"]),
    ("Y_minus_A", "output_Y_minus_A", 3, {"lambd": 0.3}, ["W3", "b3"], ["W1", "b1", "W2", "b2"]),
    ("no_1_over_m", "m_missing", 2, {}, ["W2", "b2"], []),
    ("1_over_m_twice", "m_twice", 3, {}, ["W3", "b3"], []),
    ("1_over_m_only_in_db", "m_only_db", 1, {}, ["W1"], []),
    ("db_axis_0", "db_wrong_axis", 2, {"m": 5}, ["b2"], []),
    ("l2_missing", "l2_missing", 2, {"lambd": 0.7}, ["W2"], []),
    ("l2_half", "l2_half", 1, {"lambd": 0.7}, ["W1"], []),
    ("l2_without_m", "l2_no_m", 3, {"lambd": 0.7}, ["W3"], []),
    ("l2_on_b", "l2_on_b", 2, {"lambd": 0.7}, ["b2"], []),
    ("l2_scalar", "l2_scalar", 2, {"lambd": 0.7}, ["W2"], []),
    ("l1_missing", "l1_missing", 1, {"l1": 0.5}, ["W1"], []),
    ("mask_not_applied", "dropout_mask_missing", 2, {"keep_prob": 0.6}, ["W2", "b2"], ["W1", "b1"]),
    ("no_divide_keep_prob", "dropout_no_keep_prob", 1, {"keep_prob": 0.6}, ["W1", "b1"], []),
    ("W_as_dW", "dW_is_W", 2, {}, ["W2"], []),
    ("dW_in_dA", "dA_with_dW", 3, {}, ["W2", "b2"], ["W1", "b1"]),
    ("W_not_transposed", "dA_no_transpose", 2, {}, ["W1", "b1"], []),
    ("Z_instead_of_A", "Z_for_A", 2, {}, ["W2"], []),
    ("A_l_instead_of_A_prev", "A_l_for_A_prev", 2, {}, ["W2"], []),
    ("dW_transposed", "dW_transposed", 2, {}, ["W2"], []),
]


@pytest.mark.parametrize("bug,name,layer,opts,own,inherited", PLANTED,
                         ids=[f"{p[0]}-L{p[2]}-{p[3].get('hidden', 'relu')}" for p in PLANTED])
def test_planted_mistake_is_named(bug, name, layer, opts, own, inherited):
    opts = dict(opts)
    hidden, output, loss = opts.pop("hidden", "relu"), opts.pop("output", "sigmoid"), opts.pop("loss", "bce")
    n_out, m, other = opts.pop("n_out", 1), opts.pop("m", 7), opts.pop("other", None)
    lambd, l1, kp = opts.pop("lambd", 0.0), opts.pop("l1", 0.0), opts.pop("keep_prob", 1.0)
    dims = [4, 5, 5, n_out]
    net, X, Y, D = case(dims, hidden, output, loss, m=m, keep_prob=kp)
    p = net.get_params()
    grads = learner.backprop(X, Y, p, hidden, output, loss, lambd, l1, kp, D, net.alpha, bug=bug, at=layer,
                             other=other)
    r = run(net, X, Y, D, grads, kp, l2=lambd, l1=l1)
    assert r.verdict == "bug", str(r)
    assert [(e.mistake, e.layer) for e in r.mistakes] == [(name, layer)], str(r)
    e = r.mistakes[0]
    assert sorted(e.components) == sorted(own) and sorted(e.inherited) == sorted(inherited), str(r)
    rows = {c.name: c for c in r.components}
    for c in own:
        assert rows[c].mistake == name and "fix:" in rows[c].finding
    for c in inherited:
        assert rows[c].mistake == name and f"fix layer {layer} first" in rows[c].finding
    for c in rows.values():
        if c.name not in own + inherited:
            assert c.verdict == "correct" and c.mistake is None
    s = str(r)
    assert "named mistakes" in s and e.fix in s
    assert r.to_dict()["mistakes"][0]["mistake"] == name


def test_relu_ge_is_named_where_some_Z_is_exactly_zero():
    # b2 = 0 and A1 = 0 for some examples (their layer-1 units all off): Z2 = 0 there, where >= and > differ
    net, X, Y, _ = case([2, 3, 3, 1], "relu", m=6, seed=4)
    net.params["b1"][...] = -10.0
    net.params["b1"][0] = 0.0
    net.params["W1"][0] = [1.0, 0.0]
    net.params["b2"][...] = 0.0
    X[0, :3] = -1.0                      # examples 0..2: every layer-1 unit off, Z2 = b2 = 0
    X[0, 3:] = [1.0, 2.0, 3.0]
    p = net.get_params()
    grads = learner.backprop(X, Y, p, "relu", bug="relu_ge", at=2)
    r = dk.gradcheck(net, X, Y, grads=grads)
    assert [(e.mistake, e.layer) for e in r.mistakes] == [("relu_ge", 2)], str(r)


def test_fresh_dropout_mask_in_backward_is_named():
    # small batch: the layers up to the masked one have more parameters than mask entries, so D' is identifiable
    net, X, Y, D = case([6, 4, 3, 1], "tanh", m=3, seed=2, keep_prob=0.5)
    rng = np.random.default_rng(9)
    D_back = (rng.random((4, 3)) < 0.5).astype(float)
    while np.array_equal(D_back, D[1]):
        D_back = (rng.random((4, 3)) < 0.5).astype(float)
    p = net.get_params()
    grads = learner.backprop(X, Y, p, "tanh", keep_prob=0.5, D=D, bug="fresh_mask", at=1, D_back=D_back)
    r = run(net, X, Y, D, grads, 0.5)
    assert [(e.mistake, e.layer) for e in r.mistakes] == [("dropout_fresh_mask", 1)], str(r)
    n_diff = int(np.count_nonzero((D_back != D[1])))
    assert r.mistakes[0].details["n_diff"] <= n_diff and r.mistakes[0].details["n_diff"] >= 1


def test_stale_gradient_after_an_update_is_named():
    net, X, Y, _ = case([3, 5, 4, 1], "tanh", m=9, seed=3)
    p = net.get_params()
    grads = learner.backprop(X, Y, p, "tanh")
    lr = 0.05
    for key in p:                        # the learner updates, then checks the new parameters with the old grads
        net.params[key][...] = p[key] - lr * grads["d" + key]
    r = dk.gradcheck(net, X, Y, grads=grads)
    assert r.verdict == "bug" and [e.mistake for e in r.mistakes] == ["stale"], str(r)
    assert abs(r.mistakes[0].details["learning_rate"] - lr) < 1e-6
    assert "learning_rate = 0.05" in str(r)


def test_two_mistakes_in_two_layers_are_both_named():
    net, X, Y, _ = case([4, 5, 5, 1], "relu", seed=5)
    p = net.get_params()
    grads = learner.backprop(X, Y, p, bug="no_1_over_m", at=3)
    g1 = learner.backprop(X, Y, p, bug="W_as_dW", at=1)
    grads["dW1"] = g1["dW1"]
    r = dk.gradcheck(net, X, Y, grads=grads)
    assert sorted((e.mistake, e.layer) for e in r.mistakes) == [("dW_is_W", 1), ("m_missing", 3)], str(r)


@pytest.mark.parametrize("shape_of,expect", [((1, 7), "axis 0"), ((3, 7), "not summed"), ((), "scalar")])
def test_shape_level_hints_for_db(shape_of, expect):
    net, X, Y, _ = case([4, 5, 3, 1], m=7)
    grads = learner.backprop(X, Y, net.get_params())
    grads["db2"] = np.zeros(shape_of) if shape_of else np.float64(0.3)
    with pytest.raises(ValueError, match=expect):
        dk.gradcheck(net, X, Y, grads=grads)
    # a cost_fn gets the shape-level names too
    p = net.get_params()
    with pytest.raises(ValueError, match="axis=1, keepdims=True"):
        dk.gradcheck(lambda q: 0.0, p, grads)


def test_shape_level_hint_for_A_l_in_dW_and_transposed_shape_name():
    net, X, Y, _ = case([4, 5, 3, 1])
    grads = learner.backprop(X, Y, net.get_params(), bug="A_l_instead_of_A_prev", at=2)   # (3, 3), not (3, 5)
    with pytest.raises(ValueError, match="A2 where A1 belongs"):
        dk.gradcheck(net, X, Y, grads=grads)
    assert "transposed shape" in M.shape_hint("dW2", (5, 3), (3, 5))


def test_float32_backprop_mistake_is_named_with_the_float32_tolerance():
    net, X, Y, _ = case([4, 5, 5, 1], "tanh", seed=6)
    p = {k: v.astype(np.float32) for k, v in net.get_params().items()}
    grads = learner.backprop(X.astype(np.float32), Y.astype(np.float32), p, "tanh", bug="no_derivative", at=2)
    assert all(v.dtype == np.float32 for v in grads.values())
    r = dk.gradcheck(net, X, Y, grads=grads)
    assert [(e.mistake, e.layer) for e in r.mistakes] == [("deriv_missing", 2)], str(r)


def test_explain_false_and_no_mistake_for_unexplained_bug():
    net, X, Y, _ = case([4, 5, 3, 1], seed=8)
    grads = learner.backprop(X, Y, net.get_params())
    grads["dW2"] = grads["dW2"] + 1e-3 * np.random.default_rng(0).standard_normal(grads["dW2"].shape)
    r = dk.gradcheck(net, X, Y, grads=grads)
    assert r.verdict != "correct" and r.mistakes == [] and r["W2"].mistake is None if hasattr(r, "__getitem__") \
        else r.mistakes == []
    bad = learner.backprop(X, Y, net.get_params(), bug="no_1_over_m", at=2)
    assert dk.gradcheck(net, X, Y, grads=bad, explain=False).mistakes == []
    with pytest.raises(TypeError, match="explain"):
        dk.gradcheck(net, X, Y, grads=bad, explain="yes")


def test_merged_shards_keep_the_named_mistake():
    net, X, Y, _ = case([4, 5, 5, 1], seed=1)
    grads = learner.backprop(X, Y, net.get_params(), bug="no_derivative", at=2)
    n = net.n_params
    parts = [dk.gradcheck(net, X, Y, grads=grads, indices=range(a, min(n, a + 20))) for a in range(0, n, 20)]
    merged = dk.GradcheckReport.merge(parts)
    whole = dk.gradcheck(net, X, Y, grads=grads)
    assert [(e.mistake, e.layer) for e in merged.mistakes] == [(e.mistake, e.layer) for e in whole.mistakes]
    assert [c.finding for c in merged.components] == [c.finding for c in whole.components]


# ----------------------------------------------------------------------------- no false names

def _random_correct_case(i):
    rng = np.random.default_rng(1000 + i)
    hidden = ["relu", "leaky_relu", "tanh", "sigmoid", "linear"][i % 5]
    output, loss = [("sigmoid", "bce"), ("softmax", "ce"), ("linear", "mse"), ("sigmoid", "mse")][(i // 5) % 4]
    L = int(rng.integers(1, 4))
    dims = [int(rng.integers(1, 5))] + [int(rng.integers(1, 6)) for _ in range(L - 1)] + \
           [int(rng.integers(2, 4)) if output == "softmax" else int(rng.integers(1, 3))]
    m = 1 if i % 7 == 0 else int(rng.integers(2, 9))
    net, X, Y, _ = case(dims, hidden, output, loss, m=m, seed=i)
    kw = {}
    if i % 3 == 0:
        kw["l2"] = float(rng.uniform(0.1, 1))
    if i % 4 == 1:
        kw["l1"] = float(rng.uniform(0.1, 1))
    if L > 1 and i % 5 in (1, 2):
        kw["keep_prob"] = 0.7
        if i % 2:
            kw["seed"] = i
        else:
            kw["masks"] = [(rng.random((dims[l], m)) < 0.7).astype(float) for l in range(1, L)]
    if hidden in ("relu", "leaky_relu") and i % 10 < 3 and L > 1:
        net.params["b1"][...] = 0.0          # planted kinks: units whose Z is exactly 0 for some examples
        net.params["W1"][0] = 0.0
    return net, X, Y, kw


def test_no_false_names_on_200_random_correct_gradients():
    fired = []
    for i in range(200):
        net, X, Y, kw = _random_correct_case(i)
        g = dict(net.backward(X, Y, **kw))
        # written by the learner too, where the test's backprop covers the case (explicit masks, no L1 kinks)
        if "seed" not in kw and "l1" not in kw:
            D = None if "masks" not in kw else {l: kw["masks"][l - 1] for l in range(1, net.L)}
            g = learner.backprop(X, Y, net.get_params(), net.hidden, net.output, net.loss, kw.get("l2", 0.0), 0.0,
                                 kw.get("keep_prob", 1.0), D, net.alpha)
        r = dk.gradcheck(net, X, Y, grads=g, **kw)
        if r.mistakes or any(c.mistake for c in r.components):
            fired.append((i, [e.mistake for e in r.mistakes]))
        # force every hypothesis on every component: none may match a correct gradient
        prob = _check_network_inputs(net, X, Y, kw.get("l2", 0.0), kw.get("l1", 0.0), kw.get("keep_prob", 1.0),
                                     kw.get("seed"), kw.get("masks"), 0)
        flat = np.concatenate([np.asarray(g[k], dtype=float).reshape(-1) for k in g])
        ex = M.explain(prob, net, flat, force=True)
        if ex:
            fired.append((i, "forced", [e.mistake for e in ex]))
    assert fired == []


def test_fresh_engine_mask_in_backward_is_named_for_any_batch():
    # a backward that draws its own mask with the next step's key (dk.dropout_mask(..., step=1)): m = 40 is far
    # too many mask entries to solve for, but the engine's neighbouring keys are tried directly
    net, X, Y, _ = case([5, 6, 4, 1], "relu", m=40, seed=3)
    D1 = dk.dropout_mask((6, 40), 0.7, seed=5, step=0, layer=1)
    D_back = dk.dropout_mask((6, 40), 0.7, seed=5, step=1, layer=1)
    grads = learner.backprop(X, Y, net.get_params(), "relu", keep_prob=0.7, D={1: D1},
                             bug="fresh_mask", at=1, D_back=D_back)
    r = dk.gradcheck(net, X, Y, grads=grads, keep_prob=[0.7, 1.0], seed=5)
    assert [(e.mistake, e.layer) for e in r.mistakes] == [("dropout_fresh_mask", 1)], str(r)
