"""Naming the mistake: a course-style backprop with one common mistake switched on, and a matcher.

``backward(..., mistake=name, layer=k)`` is the reference backprop of :mod:`dnnkit.reference` written out again
with ONE line changed the way learners change it (see ``MISTAKES``). When a gradient check finds a component
wrong, :func:`explain` compares the user's gradient, component by component, with the gradient each such
mistaken backprop produces on the same net, data and dropout masks; a hypothesis that reproduces a component
to ~1e-8 relative (float32 gradients: 1e-5) names the mistake and its fix in the course's terms. Where a
mistake in layer k changes dZ[k], every layer below inherits it through dA[k-1]; those components are reported
as "wrong only because dA[k-1] comes from the wrong dZ[k]: fix layer k first".

Hypotheses are tried only when some component is wrong, and only those the architecture allows (a ReLU mask of
another layer needs a layer of the same width; ``>=`` instead of ``>`` differs only where some Z is exactly 0;
dropout mistakes need dropout). A hypothesis that coincides with the correct backprop on this net (``g'(A)``
for ReLU, a derivative applied twice for ReLU) can never be named: a name needs the mistaken gradient to differ
from the correct one by far more than the match tolerance. Two searches go beyond one changed line: a stale
gradient (the gradient at theta + a g, i.e. before a gradient-descent step of learning rate a: found by a 1-D
Newton search on a) and a fresh dropout mask in backward (a 0/1 mask D' solved for by least squares, identifiable
when the layers up to the masked one have at least n[k] m parameters: small batches).

Shape-level hypotheses (:func:`shape_hint`) need no forward cache and also serve a user ``cost_fn``: a db of
shape (1, m) was summed over the wrong axis, (n, m) was not summed, a dW of the transposed shape, ...
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from . import reference as ref

__all__ = ["MISTAKES", "backward", "explain", "shape_hint", "Explanation", "MATCH_TOL", "MATCH_TOL_FLOAT32"]

MATCH_TOL = 1e-8            # relative ||g_user - g_mistake|| / ||g_mistake|| for a float64 gradient
MATCH_TOL_FLOAT32 = 1e-5    # a float32 backprop rounds at ~6e-8 per operation: its gradient is ~1e-6 off
_DISTINCT = 100.0           # a mistake can be named only where it differs from the correct gradient by 100 x tol

_DERIV = {"relu": "(Z{k} > 0)", "leaky_relu": "np.where(Z{k} > 0, 1, alpha)", "tanh": "(1 - np.tanh(Z{k})**2)",
          "sigmoid": "s * (1 - s) with s = sigmoid(Z{k})", "linear": "1"}

# name -> (what the mistaken backprop does, the fix), in the course's terms; {k} the layer, {j} the other layer,
# {p} = k - 1. Hidden-layer mistakes act where dZ[k] is computed from dA[k].
MISTAKES = {
    "deriv_missing": ("leaves out the activation derivative of layer {k}: dZ{k} = dA{k}",
                      "multiply by g'(Z{k}): dZ{k} = dA{k} * {deriv}"),
    "deriv_twice": ("applies layer {k}'s activation derivative twice: dZ{k} = dA{k} * g'(Z{k}) * g'(Z{k})",
                    "apply g'(Z{k}) once: dZ{k} = dA{k} * {deriv}"),
    "deriv_from_A": ("computes layer {k}'s activation derivative from A{k} instead of Z{k}: g'(A{k})",
                     "pass Z{k} from the cache: dZ{k} = dA{k} * {deriv}"),
    "deriv_formula_on_Z": ("plugs Z{k} into the A-form of the derivative (1 - Z{k}**2 for tanh, Z{k}(1 - Z{k}) for "
                           "sigmoid)", "use A{k} = g(Z{k}) in that formula: dZ{k} = dA{k} * {deriv}"),
    "deriv_wrong_layer": ("uses layer {j}'s activation derivative (mask) for layer {k}: dZ{k} = dA{k} * g'(Z{j})",
                          "use layer {k}'s own: dZ{k} = dA{k} * {deriv}"),
    "relu_ge": ("uses Z{k} >= 0 instead of Z{k} > 0 in layer {k}'s ReLU mask (g'(0) = 1 instead of 0)",
                "dZ{k} = dA{k} * {deriv}: at Z = 0 the backprop's convention is g'(0) = 0"),
    "output_extra_deriv": ("multiplies the output dZ{k} = A{k} - Y by g'(Z{k}) once more; with {loss} and a "
                           "{output} output the derivative is already inside A{k} - Y",
                           "dZ{k} = A{k} - Y"),
    "output_Y_minus_A": ("starts from dZ{k} = Y - A{k} (the sign of every data gradient flips)",
                         "dZ{k} = A{k} - Y"),
    "m_missing": ("leaves out 1/m in dW{k} and db{k}", "dW{k} = (1/m) dZ{k} A{p}.T and db{k} = (1/m) "
                  "np.sum(dZ{k}, axis=1, keepdims=True)"),
    "m_twice": ("divides dW{k} and db{k} by m twice (1/m in dZ and again in dW, db)",
                "divide by m once: dW{k} = (1/m) dZ{k} A{p}.T"),
    "m_only_db": ("divides db{k} by m but not dW{k}", "dW{k} = (1/m) dZ{k} A{p}.T"),
    "db_wrong_axis": ("sums dZ{k} over axis 0 (the units) for db{k} instead of over the examples",
                      "db{k} = (1/m) np.sum(dZ{k}, axis=1, keepdims=True)"),
    "dW_is_W": ("stores W{k} where dW{k} belongs", "dW{k} = (1/m) dZ{k} A{p}.T (+ the L2 term)"),
    "dA_with_dW": ("propagates with dW{k} where W{k} belongs: dA{p} = dW{k}.T dZ{k}",
                   "dA{p} = W{k}.T dZ{k}"),
    "dA_no_transpose": ("propagates with W{k} instead of its transpose: dA{p} = W{k} dZ{k}",
                        "dA{p} = W{k}.T dZ{k}"),
    "Z_for_A": ("takes Z{p} from the cache where A{p} belongs: dW{k} = (1/m) dZ{k} Z{p}.T",
                "dW{k} = (1/m) dZ{k} A{p}.T"),
    "A_l_for_A_prev": ("takes A{k} from the cache where A{p} belongs: dW{k} = (1/m) dZ{k} A{k}.T",
                       "dW{k} = (1/m) dZ{k} A{p}.T"),
    "dW_transposed": ("stores the transpose of dW{k}: (1/m) A{p} dZ{k}.T", "dW{k} = (1/m) dZ{k} A{p}.T"),
    "l2_missing": ("has no L2 term in dW{k}", "add (lambd/m) * W{k} to dW{k}"),
    "l2_half": ("adds (lambd/(2m)) W{k}: the factor of the cost, not of its derivative",
                "the derivative of (lambd/(2m)) ||W||^2 is (lambd/m) W{k}"),
    "l2_no_m": ("adds lambd * W{k} (no 1/m)", "add (lambd/m) * W{k}"),
    "l2_on_b": ("adds an L2 term to db{k} too", "biases are not regularized: db{k} has no lambd term"),
    "l2_scalar": ("adds the L2 cost term (lambd/(2m)) sum(W{k}**2), a scalar, to dW{k}",
                  "add its derivative (lambd/m) * W{k}"),
    "l1_missing": ("has no L1 term in dW{k}", "add (l1/(2m)) * np.sign(W{k}) to dW{k}"),
    "dropout_mask_missing": ("does not apply layer {k}'s dropout mask to dA{k} (only divides by keep_prob)",
                             "multiply dA{k} by D{k} (the forward's mask) and divide by keep_prob"),
    "dropout_no_keep_prob": ("applies layer {k}'s mask D{k} to dA{k} but does not divide by keep_prob",
                             "dA{k} = dA{k} * D{k} / keep_prob"),
    "dropout_fresh_mask": ("draws a fresh dropout mask for layer {k} in backward ({n_diff} of {n_all} entries differ "
                           "from the forward's D{k})", "reuse the forward's mask: dA{k} = dA{k} * D{k} / keep_prob "
                           "with D{k} from the cache"),
    "stale": ("is the gradient at other parameters: theta {sign} {a:.6g} * g, i.e. {when}",
              "compute the gradient at the parameters being checked (recompute it after every update)"),
}

# mistakes that change dZ[k] (so every layer below inherits them): the first layer whose dW/db they change
_PROPAGATING = {"deriv_missing", "deriv_twice", "deriv_from_A", "deriv_formula_on_Z", "deriv_wrong_layer", "relu_ge",
                "output_extra_deriv", "output_Y_minus_A", "dropout_mask_missing", "dropout_no_keep_prob",
                "dropout_fresh_mask", "dA_with_dW", "dA_no_transpose"}


# ---------------------------------------------------------------------------------------------- the oracle

def backward(X, Y, params, hidden="relu", output="sigmoid", loss="bce", l2=0.0, l1=0.0, keep_prob=1.0, masks=None,
             alpha=0.01, mistake=None, layer=None, other=None, fresh_mask=None, caches=None, need=None, base=None):
    """The course's backprop (as :func:`dnnkit.reference.backward_propagation`) with at most ONE mistake.

    mistake: a key of ``MISTAKES`` (not "stale") or None; layer: the layer k it is made in (hidden-layer
    activation / dropout mistakes: where dZ[k] is computed from dA[k]; "dA_*": the step from layer k to k-1);
    other: the other layer j of "deriv_wrong_layer"; fresh_mask: D' of "dropout_fresh_mask". masks: explicit
    0/1 masks (length L: input + hidden, or L-1), the forward's. Returns grads {"dW1", "db1", ...} whose arrays
    have the shapes the mistaken code would produce (a transposed dW, a (1, m) db). need / base (speed): compute
    dW, db only for the layers in ``need`` and take the others from the grads ``base`` (the correct backprop),
    stopping below the lowest needed layer.
    """
    L = ref._num_layers(params)
    kp = ref.normalize_keep_prob(keep_prob, L)
    if caches is None:
        _, caches = ref.forward_propagation(X, params, hidden, output, kp, masks, None, alpha)
    AL = caches[f"A{L}"]
    Y = np.asarray(Y, dtype=np.float64).reshape(AL.shape)
    m = AL.shape[1]
    mk = lambda name, k: mistake == name and layer == k  # noqa: E731
    grads = {}
    dZ = ref._output_dZ(AL, Y, output, loss)                    # (n[L], m)
    if mk("output_Y_minus_A", L):
        dZ = -dZ
    if mk("output_extra_deriv", L):
        dZ = dZ * AL * (1 - AL)     # the learner's g'(Z_L), elementwise (for softmax too)
    for l in range(L, 0, -1):
        if need is not None and l not in need:
            grads[f"dW{l}"], grads[f"db{l}"] = base[f"dW{l}"], base[f"db{l}"]
            if l < min(need):
                continue                                        # nothing below is needed either
            if l == 1:
                break
            Wp = base[f"dW{l}"] if mk("dA_with_dW", l) else params[f"W{l}"]
            dA = np.dot(Wp, dZ) if mk("dA_no_transpose", l) else np.dot(Wp.T, dZ)   # this layer's dW, db: as base
            dZ = _hidden_dZ(dA, l - 1, kp, caches, hidden, alpha, mk, fresh_mask, other)
            continue
        A_prev = caches[f"A{l - 1}"]                            # (n[l-1], m)
        if mk("Z_for_A", l):
            A_prev = caches[f"Z{l - 1}"]
        if mk("A_l_for_A_prev", l):
            A_prev = caches[f"A{l}"]
        W, b = params[f"W{l}"], params[f"b{l}"]
        inv_m_W = 1.0 if mk("m_missing", l) or mk("m_only_db", l) else (1.0 / m ** 2 if mk("m_twice", l) else 1.0 / m)
        inv_m_b = 1.0 if mk("m_missing", l) else (1.0 / m ** 2 if mk("m_twice", l) else 1.0 / m)
        dW = inv_m_W * np.dot(dZ, A_prev.T)                      # (n[l], n[l-1])
        if l2:
            if mk("l2_half", l):
                dW = dW + l2 / (2 * m) * W
            elif mk("l2_no_m", l):
                dW = dW + l2 * W
            elif mk("l2_scalar", l):
                dW = dW + l2 / (2 * m) * np.sum(np.square(W))
            elif not mk("l2_missing", l):
                dW = dW + l2 / m * W
        if l1 and not mk("l1_missing", l):
            dW = dW + l1 / (2 * m) * np.sign(W)
        if mk("db_wrong_axis", l):
            db = inv_m_b * np.sum(dZ, axis=0, keepdims=True)    # (1, m)
        else:
            db = inv_m_b * np.sum(dZ, axis=1, keepdims=True)    # (n[l], 1)
        if l2 and mk("l2_on_b", l):
            db = db + l2 / m * b
        if mk("dW_is_W", l):
            dW = np.array(W, dtype=np.float64, copy=True)
        grads[f"dW{l}"] = dW.T if mk("dW_transposed", l) else dW
        grads[f"db{l}"] = db
        if l == 1:
            break
        Wp = dW if mk("dA_with_dW", l) else W
        dA = np.dot(Wp, dZ) if mk("dA_no_transpose", l) else np.dot(Wp.T, dZ)   # (n[l-1], m)
        dZ = _hidden_dZ(dA, l - 1, kp, caches, hidden, alpha, mk, fresh_mask, other)
    return {key: grads[key] for l in range(1, L + 1) for key in (f"dW{l}", f"db{l}")}



def _hidden_dZ(dA, k, kp, caches, hidden, alpha, mk, fresh_mask, other):
    """dZ[k] from dA[k]: dropout in backward, then the activation derivative (each with its mistakes)."""
    if kp[k] < 1.0:
        D = fresh_mask if mk("dropout_fresh_mask", k) else caches[f"D{k}"]
        if not mk("dropout_mask_missing", k):
            dA = dA * D
        if not mk("dropout_no_keep_prob", k):
            dA = dA / kp[k]
    Zk = caches[f"Z{k}"]
    if mk("deriv_missing", k):
        dZ = np.array(dA, copy=True)
    elif mk("deriv_twice", k):
        dZ = ref.activation_backward(ref.activation_backward(dA, Zk, hidden, alpha), Zk, hidden, alpha)
    elif mk("deriv_from_A", k):
        dZ = ref.activation_backward(dA, caches[f"A{k}"], hidden, alpha)
    elif mk("deriv_formula_on_Z", k):
        dZ = dA * (1 - Zk ** 2) if hidden == "tanh" else dA * Zk * (1 - Zk)
    elif mk("deriv_wrong_layer", k):
        dZ = ref.activation_backward(dA, caches[f"Z{other}"], hidden, alpha)
    elif mk("relu_ge", k):
        dZ = dA * np.where(Zk >= 0, 1.0, 0.0 if hidden == "relu" else alpha)
    else:
        dZ = ref.activation_backward(dA, Zk, hidden, alpha)
    return dZ


def _hypotheses(dims, hidden, output, l2, l1, kp, m, caches):
    """(mistake, layer, other) triples that this architecture allows."""
    L = len(dims) - 1
    out = []
    for k in range(1, L):
        if hidden != "linear":
            out += [("deriv_missing", k, None), ("deriv_twice", k, None), ("deriv_from_A", k, None)]
        if hidden in ("tanh", "sigmoid"):
            out.append(("deriv_formula_on_Z", k, None))
        if hidden in ("relu", "leaky_relu") and np.any(caches[f"Z{k}"] == 0):
            out.append(("relu_ge", k, None))
        if hidden != "linear":
            out += [("deriv_wrong_layer", k, j) for j in range(1, L) if j != k and dims[j] == dims[k]]
        if kp[k] < 1.0:
            out += [("dropout_mask_missing", k, None), ("dropout_no_keep_prob", k, None)]
    if output != "linear":
        out.append(("output_extra_deriv", L, None))
    out.append(("output_Y_minus_A", L, None))
    for l in range(1, L + 1):
        out += [("m_missing", l, None), ("m_twice", l, None), ("m_only_db", l, None), ("dW_is_W", l, None)]
        if dims[l] == m and m > 1:
            out.append(("db_wrong_axis", l, None))
        if dims[l] > 1 and dims[l - 1] > 1:
            out.append(("dW_transposed", l, None))
        if l >= 2:
            out += [("Z_for_A", l, None), ("dA_with_dW", l, None)]
            if dims[l] == dims[l - 1]:
                out.append(("dA_no_transpose", l, None))
        if dims[l] == dims[l - 1]:
            out.append(("A_l_for_A_prev", l, None))
        if l2:
            out += [("l2_missing", l, None), ("l2_half", l, None), ("l2_no_m", l, None), ("l2_on_b", l, None),
                    ("l2_scalar", l, None)]
        if l1:
            out.append(("l1_missing", l, None))
    return out


# ---------------------------------------------------------------------------------------------- the matcher

@dataclass
class Explanation:
    """A named mistake: the components it reproduces (``components``: those whose own lines it changes;
    ``inherited``: lower layers wrong only through dA), the message and the fix."""
    mistake: str
    layer: int
    components: list
    inherited: list = field(default_factory=list)
    message: str = ""
    fix: str = ""
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"mistake": self.mistake, "layer": self.layer, "components": list(self.components),
                "inherited": list(self.inherited), "message": self.message, "fix": self.fix,
                "details": {k: (float(v) if isinstance(v, (float, np.floating)) else v)
                            for k, v in self.details.items()}}

    def finding(self, comp: str) -> str:
        if comp in self.inherited:
            k = self.first_layer
            return (f"wrong only because dA{k - 1} comes from the wrong dZ{k} (the mistake named in layer "
                    f"{self.layer}): fix layer {self.layer} first")
        return f"{self.message}; fix: {self.fix}"

    @property
    def short(self) -> str:
        return self.mistake.replace("_", " ")

    @property
    def first_layer(self) -> int:
        return int(self.details.get("first_layer", self.layer))


def _flat(grads, dims):
    return np.concatenate([np.asarray(grads[f"d{p}{l}"], dtype=np.float64).reshape(-1)
                           for l in range(1, len(dims)) for p in ("W", "b")])


def _norm(a) -> float:
    # einsum, not BLAS: NumPy's threaded BLAS dot costs milliseconds per call on a busy machine
    a = np.ravel(a)
    return math.sqrt(float(np.einsum("i,i->", a, a)))


def _rel(a, b) -> float:
    n = _norm(b)
    d = _norm(a - b)
    if not math.isfinite(d):
        return math.inf
    return d / n if n > 0 else (0.0 if d == 0 else math.inf)


def _text(name, layer, other, dims, hidden, output, loss, extra=None):
    what, fix = MISTAKES[name]
    fmt = dict(k=layer, p=layer - 1, j=other, deriv=_DERIV.get(hidden, "g'(Z)").format(k=layer), loss=loss,
               output=output, **(extra or {}))
    if name in ("output_extra_deriv", "output_Y_minus_A"):
        fmt["deriv"] = ""
    return what.format(**fmt), fix.format(**fmt)


def explain(prob: dict, net, g: np.ndarray, tol: float = MATCH_TOL, only=None, force: bool = False) -> list:
    """Explanations of the user's flat float64 gradient ``g`` (gradient_check's Network problem ``prob``).

    only: component names to explain (default: every component where ``g`` differs from the correct backprop);
    force: treat every component (of ``only``) as wrong and try every hypothesis anyway (tests: no false names).
    Returns a list of :class:`Explanation` (empty when nothing matches)."""
    dims = list(prob["dims"])
    L = len(dims) - 1
    X, Y, m = prob["X"], prob["Y"], prob["m"]
    hidden, output, loss, alpha = net.hidden, net.output, net.loss, float(net.alpha)
    kp = list(prob["keep"])
    params = {}
    off = 0
    theta = prob["theta"]
    for l in range(1, L + 1):
        for p, shape in (("W", (dims[l], dims[l - 1])), ("b", (dims[l], 1))):
            size = shape[0] * shape[1]
            params[f"{p}{l}"] = theta[off:off + size].reshape(shape)
            off += size
    masks = _forward_masks(prob, kp)
    _, caches = ref.forward_propagation(X, params, hidden, output, kp, masks, None, alpha)
    common = dict(hidden=hidden, output=output, loss=loss, l2=prob["l2"], l1=prob["l1"], keep_prob=kp,
                  masks=masks, alpha=alpha, caches=caches)
    base = backward(X, Y, params, **common)
    correct = _flat(base, dims)
    comps = []
    off = 0
    for l in range(1, L + 1):
        for p, size in (("W", dims[l] * dims[l - 1]), ("b", dims[l])):
            comps.append((f"{p}{l}", l, slice(off, off + size)))
            off += size
    wrong = [c for c in comps if (force or _rel(g[c[2]], correct[c[2]]) > _DISTINCT * tol)
             and (only is None or c[0] in only)]
    if not wrong:
        return []
    cands: list = []
    wrong_layers = {c[1] for c in wrong}
    for name, layer, other in _hypotheses(dims, hidden, output, prob["l2"], prob["l1"], kp, m, caches):
        # a mistake must reproduce every component of its own layer: one whose layer the user got right cannot
        # be named, so it is not even computed (most of them, when one layer is wrong)
        if (layer - 1 if name in ("dA_with_dW", "dA_no_transpose") else layer) not in wrong_layers:
            continue
        if name in ("dA_with_dW", "dA_no_transpose"):
            need = set(range(1, layer))
        elif name in _PROPAGATING:
            need = set(range(1, layer + 1))
        else:
            need = {layer}
        try:
            h = _flat(backward(X, Y, params, mistake=name, layer=layer, other=other, need=need, base=base,
                               **common), dims)
        except (ValueError, FloatingPointError):
            continue
        cands.append((name, layer, other, h, {}))
    cands += _fresh_mask_candidates(X, Y, params, common, dims, kp, g, correct, comps, tol)
    cands += _engine_mask_candidates(prob, X, Y, params, common, dims, kp, wrong)
    expl = _assign(cands, wrong, comps, g, correct, tol, dims, hidden, output, loss)
    left = [c for c in wrong if not any(c[0] in e.components or c[0] in e.inherited for e in expl)]
    if len(left) >= 2 and len(left) == len(wrong):
        st = _stale(prob, g, correct, tol)
        if st is not None:
            a = st
            sign, when = ("+", f"before a gradient-descent step with learning_rate = {a:.6g} (the gradient was "
                               "kept from the old parameters)") if a > 0 else \
                ("-", f"after one more gradient-descent step of learning_rate = {-a:.6g}")
            what, fix = _text("stale", 0, None, dims, hidden, output, loss,
                              {"sign": sign, "a": abs(a), "when": when})
            expl.append(Explanation("stale", 0, [c[0] for c in wrong], [], "the whole gradient " + what, fix,
                                    {"learning_rate": a}))
    return expl


def _forward_masks(prob, kp):
    """The forward's 0/1 masks (length L, None where no dropout): the given ones, else the engine's seeded draw."""
    from . import _core

    dims, L, m = prob["dims"], prob["L"], prob["m"]
    out = []
    for l in range(L):
        if kp[l] < 1.0:
            D = prob["mlist"][l]
            if D is None:
                D = _core.dropout_mask(dims[l], m, kp[l], prob["seed"], prob["step"], l)
            out.append(np.asarray(D, dtype=np.float64))
        else:
            out.append(None)
    return out


def _assign(cands, wrong, comps, g, correct, tol, dims, hidden, output, loss):
    """Greedy cover of the wrong components by hypotheses (most components first, fewest contradictions)."""
    scored = []
    for order, (name, layer, other, h, extra) in enumerate(cands):
        first = layer if name not in ("dA_with_dW", "dA_no_transpose") else layer - 1
        matched, contra, own_ok = [], 0, True
        for cname, cl, sl in comps:
            differs = _rel(h[sl], correct[sl]) > _DISTINCT * tol
            if not differs:
                continue
            if _rel(g[sl], h[sl]) <= tol:
                matched.append(cname)
            else:
                contra += 1
                # the mistaken line changes every component of its own layer: all of them must match (layers
                # below may carry a second mistake of their own, so there a partial match still names this one)
                if cl == first:
                    own_ok = False
        if matched and own_ok:
            scored.append((name, layer, other, matched, contra, order, extra))
    todo = {c[0] for c in wrong}
    out = []
    while todo:
        best = None
        for s in scored:
            cover = [c for c in s[3] if c in todo]
            if not cover:
                continue
            key = (len(cover), -s[4], -s[5])
            if best is None or key > best[0]:
                best = (key, s, cover)
        if best is None:
            break
        _, (name, layer, other, matched, contra, _, extra), cover = best
        first = layer if name not in ("dA_with_dW", "dA_no_transpose") else layer - 1
        own = [c for c in cover if int(c[1:]) == first or name not in _PROPAGATING]
        inherited = [c for c in cover if c not in own]
        what, fix = _text(name, layer, other, dims, hidden, output, loss, extra)
        label = " and ".join(", ".join("d" + c for c in own).rsplit(", ", 1)) if own else ""
        msg = (f"{label} equal a backprop that {what}" if len(own) > 1 else f"{label} equals a backprop that {what}") \
            if own else f"equals a backprop that {what}"
        details = {"first_layer": first}
        if other is not None:
            details["other_layer"] = other
        details.update({k: v for k, v in extra.items() if k in ("n_diff", "n_all")})
        out.append(Explanation(name, layer, own, inherited, msg, fix, details))
        todo -= set(cover)
    return out


# ---------------------------------------------------------------------------------------------- the searches

def _fresh_mask_candidates(X, Y, params, common, dims, kp, g, correct, comps, tol, max_unknowns=512,
                           max_matrix=4_000_000):
    """For each hidden layer k with dropout: solve for the 0/1 mask D' that layers <= k's gradients imply
    (they are linear in D'); a candidate when D' is 0/1, reproduces them, and differs from the forward's D."""
    out = []
    L = len(dims) - 1
    caches = common["caches"]
    for k in range(1, L):
        if kp[k] >= 1.0:
            continue
        n, m = dims[k], X.shape[1]
        if n * m > max_unknowns:
            continue
        lower = [c for c in comps if c[1] <= k]
        sl = slice(lower[0][2].start, lower[-1][2].stop)
        n_par = sl.stop - sl.start
        if n_par < n * m:          # not identifiable: more mask entries than equations
            continue
        if n_par * n * m > max_matrix:   # one NumPy backprop per mask entry and a dense lstsq: small cases only
            continue
        # the gradient of layers <= k is affine in D': base (D' = 0) + sum_ij D'_ij col_ij
        base = _flat(backward(X, Y, params, mistake="dropout_fresh_mask", layer=k,
                              fresh_mask=np.zeros((n, m)), **common), dims)[sl]
        cols = np.empty((n_par, n * m))
        for idx in range(n * m):
            E = np.zeros((n, m))
            E.flat[idx] = 1.0
            cols[:, idx] = _flat(backward(X, Y, params, mistake="dropout_fresh_mask", layer=k, fresh_mask=E,
                                          **common), dims)[sl] - base
        active = np.flatnonzero(np.any(cols != 0, axis=0))
        if active.size == 0:
            continue
        A = cols[:, active]
        sol, _, rank, _ = np.linalg.lstsq(A, g[sl] - base, rcond=None)
        if rank < active.size:
            continue
        if not np.all(np.abs(sol * (1 - sol)) < 1e-6):
            continue
        D = caches[f"D{k}"].reshape(-1).copy()
        Dn = D.copy()
        Dn[active] = np.round(sol)
        n_diff = int(np.count_nonzero(Dn[active] != D[active]))
        if n_diff == 0:
            continue
        h = _flat(backward(X, Y, params, mistake="dropout_fresh_mask", layer=k, fresh_mask=Dn.reshape(n, m),
                           **common), dims)
        out.append(("dropout_fresh_mask", k, None, h, {"n_diff": n_diff, "n_all": int(active.size)}))
    return out


def _engine_mask_candidates(prob, X, Y, params, common, dims, kp, wrong):
    """Seeded dropout: the fresh mask of a backward that drew its own from the engine with a neighbouring key
    ((seed, step + 1), (seed, step - 1), (seed + 1, step)): any batch size, no identifiability needed."""
    from . import _core

    out = []
    wrong_layers = {c[1] for c in wrong}
    seed, step, m = prob["seed"], prob["step"], prob["m"]
    for k in range(1, len(dims) - 1):
        if kp[k] >= 1.0 or prob["mlist"][k] is not None or k not in wrong_layers:
            continue
        D = common["caches"][f"D{k}"]
        for s2, t2 in ((seed, step + 1), (seed, step - 1), (seed + 1, step)):
            if t2 < 0 or s2 >= 2 ** 64:
                continue
            Dn = np.asarray(_core.dropout_mask(dims[k], m, kp[k], s2, t2, k), dtype=np.float64)
            n_diff = int(np.count_nonzero(Dn != D))
            if n_diff == 0:
                continue
            h = _flat(backward(X, Y, params, mistake="dropout_fresh_mask", layer=k, fresh_mask=Dn, **common), dims)
            out.append(("dropout_fresh_mask", k, None, h, {"n_diff": n_diff, "n_all": int(D.size)}))
    return out


def _stale(prob, g, correct, tol, max_iter=12):
    """a with grad J(theta + a g) == g (a stale gradient kept across a step theta -= a g), or None."""
    twin = prob["twin"]
    X, Y, kw = prob["X"], prob["Y"], prob["kw"]
    theta = prob["theta"].copy()

    def grad_at(a):
        twin.theta = theta + a * g
        twin.backward(X, Y, **kw)
        return twin.grad_vector.astype(np.float64, copy=True)

    gn = float(np.linalg.norm(g))
    if gn == 0 or not np.all(np.isfinite(g)):
        return None
    try:
        a = 0.0
        F = correct - g
        for _ in range(max_iter):
            t = 1e-5 * max(abs(a), 1e-2)   # central difference of the gradient along g: dF/da = H(theta + a g) g
            dF = (grad_at(a + t) - grad_at(a - t)) / (2 * t)
            dd = float(dF @ dF)
            if dd == 0 or not math.isfinite(dd):
                return None
            a -= float(dF @ F) / dd
            if not math.isfinite(a) or abs(a) > 1e6:
                return None
            F = grad_at(a) - g
            if float(np.linalg.norm(F)) <= tol * gn:
                return a if abs(a) > 1e-12 else None
        return None
    finally:
        twin.theta = theta


# ---------------------------------------------------------------------------------------------- shape level

def shape_hint(key: str, got: tuple, expected: tuple, m: int | None = None) -> str:
    """Why a gradient array has the wrong shape, in the course's terms ('' when there is no named reason)."""
    got, expected = tuple(got), tuple(expected)
    name = key[1:] if key.startswith("d") else key
    if not name[1:].isdigit():
        return ""
    l = name[1:]
    if name.startswith("b"):
        n = expected[0]
        if m is not None and got in ((1, m), (m,)) and m != n:
            return (f"{key} has shape {got}: dZ{l} was summed over axis 0 (the units) instead of the examples; "
                    f"use db{l} = (1/m) np.sum(dZ{l}, axis=1, keepdims=True)")
        if (m is not None and got == (n, m) and m > 1) or (m is None and len(got) == 2 and got[0] == n and got[1] > 1):
            return (f"{key} has shape {got}, that of dZ{l}: not summed over the examples? "
                    f"use db{l} = (1/m) np.sum(dZ{l}, axis=1, keepdims=True)")
        if got in ((), (1,), (1, 1)) and n > 1:
            return (f"{key} is a scalar: np.sum(dZ{l}) summed over the units too; "
                    f"use np.sum(dZ{l}, axis=1, keepdims=True)")
        if len(got) == 2 and got[0] == 1 and m is None:
            return f"{key} has shape {got}: summed over the wrong axis? use np.sum(dZ{l}, axis=1, keepdims=True)"
    if name.startswith("W") and len(expected) == 2:
        if got == expected[::-1] and expected[0] != expected[1]:
            return (f"{key} has the transposed shape {got}: dW{l} = (1/m) dZ{l} A{int(l) - 1}.T is "
                    f"{expected}")
        if len(got) == 2 and got == (expected[0], expected[0]) and expected[0] != expected[1]:
            return (f"{key} has shape {got}: computed with A{l} where A{int(l) - 1} belongs? "
                    f"dW{l} = (1/m) dZ{l} A{int(l) - 1}.T is {expected}")
    return ""
