"""A learner's backprop, written out here independently of dnnkit (test-side oracle input): the course's
L-layer forward/backward in plain NumPy, with ``bug=`` switching on ONE mistake learners make, at layer ``at``.
Tests plant these mistakes and check that dk.gradcheck names them."""
import numpy as np


def g(name, Z, alpha=0.01):
    if name == "relu":
        return np.maximum(0, Z)
    if name == "leaky_relu":
        return np.where(Z > 0, Z, alpha * Z)
    if name == "tanh":
        return np.tanh(Z)
    if name == "sigmoid":
        return 1 / (1 + np.exp(-Z))
    if name == "softmax":
        E = np.exp(Z - Z.max(axis=0))
        return E / E.sum(axis=0)
    return Z


def g_prime(name, Z, alpha=0.01):
    if name == "relu":
        return (Z > 0).astype(Z.dtype)
    if name == "leaky_relu":
        return np.where(Z > 0, 1.0, alpha).astype(Z.dtype)
    if name == "tanh":
        return 1 - np.tanh(Z) ** 2
    if name == "sigmoid":
        s = 1 / (1 + np.exp(-Z))
        return s * (1 - s)
    return np.ones_like(Z)


def forward(X, p, hidden, output, keep_prob=1.0, D=None, alpha=0.01):
    L = len(p) // 2
    A, Z = {0: X}, {}
    for l in range(1, L + 1):
        Z[l] = p[f"W{l}"] @ A[l - 1] + p[f"b{l}"]
        if l < L:
            A[l] = g(hidden, Z[l], alpha)
            if D is not None and l in D:
                A[l] = A[l] * D[l] / keep_prob
        else:
            A[l] = g(output, Z[l])
    return A, Z


def cost(X, Y, p, hidden, output, loss, lambd=0.0, l1=0.0, keep_prob=1.0, D=None, alpha=0.01):
    A, Z = forward(X, p, hidden, output, keep_prob, D, alpha)
    L = len(p) // 2
    AL, m = A[L], X.shape[1]
    if loss == "bce":
        J = -np.sum(Y * np.log(AL) + (1 - Y) * np.log(1 - AL)) / m
    elif loss == "ce":
        J = -np.sum(Y * np.log(AL)) / m
    else:
        J = np.sum((AL - Y) ** 2) / (2 * m)
    Ws = [p[f"W{l}"] for l in range(1, L + 1)]
    return J + lambd / (2 * m) * sum(np.sum(W ** 2) for W in Ws) + l1 / (2 * m) * sum(np.sum(np.abs(W)) for W in Ws)


def backprop(X, Y, p, hidden="relu", output="sigmoid", loss="bce", lambd=0.0, l1=0.0, keep_prob=1.0, D=None,
             alpha=0.01, bug=None, at=None, other=None, D_back=None):
    """grads of the course's cost; ``D``: {layer: 0/1 mask} of the forward; ``D_back``: the mask a buggy
    backward draws afresh ("fresh_mask")."""
    L = len(p) // 2
    A, Z = forward(X, p, hidden, output, keep_prob, D, alpha)
    m = X.shape[1]
    here = lambda name, l: bug == name and at == l  # noqa: E731
    dZ = A[L] - Y
    if (output, loss) == ("sigmoid", "mse"):
        dZ = dZ * A[L] * (1 - A[L])
    if here("Y_minus_A", L):
        dZ = Y - A[L]
    if here("extra_output_derivative", L):
        dZ = dZ * A[L] * (1 - A[L])
    grads = {}
    for l in range(L, 0, -1):
        W, b = p[f"W{l}"], p[f"b{l}"]
        A_prev = A[l - 1]
        if here("Z_instead_of_A", l):
            A_prev = Z[l - 1]
        if here("A_l_instead_of_A_prev", l):
            A_prev = A[l]
        dW = np.dot(dZ, A_prev.T) / m
        db = np.sum(dZ, axis=1, keepdims=True) / m
        if here("no_1_over_m", l):
            dW, db = dW * m, db * m
        if here("1_over_m_twice", l):
            dW, db = dW / m, db / m
        if here("1_over_m_only_in_db", l):
            dW = dW * m
        if here("db_axis_0", l):
            db = np.sum(dZ, axis=0, keepdims=True) / m
        if lambd:
            if here("l2_half", l):
                dW = dW + lambd / (2 * m) * W
            elif here("l2_without_m", l):
                dW = dW + lambd * W
            elif here("l2_scalar", l):
                dW = dW + lambd / (2 * m) * np.sum(np.square(W))
            elif not here("l2_missing", l):
                dW = dW + (lambd / m) * W
            if here("l2_on_b", l):
                db = db + (lambd / m) * b
        if l1 and not here("l1_missing", l):
            dW = dW + l1 / (2 * m) * np.sign(W)
        if here("W_as_dW", l):
            dW = W.copy()
        grads[f"dW{l}"] = dW.T if here("dW_transposed", l) else dW
        grads[f"db{l}"] = db
        if l == 1:
            break
        if here("dW_in_dA", l):
            dA = np.dot(dW.T, dZ)
        elif here("W_not_transposed", l):
            dA = np.dot(W, dZ)
        else:
            dA = np.dot(W.T, dZ)
        k = l - 1
        if D is not None and k in D:
            mask = D_back if here("fresh_mask", k) else D[k]
            if not here("mask_not_applied", k):
                dA = dA * mask
            if not here("no_divide_keep_prob", k):
                dA = dA / keep_prob
        if here("no_derivative", k):
            dZ = dA
        elif here("derivative_twice", k):
            dZ = dA * g_prime(hidden, Z[k], alpha) * g_prime(hidden, Z[k], alpha)
        elif here("derivative_of_A", k):
            dZ = dA * g_prime(hidden, A[k], alpha)
        elif here("A_formula_on_Z", k):
            dZ = dA * (1 - Z[k] ** 2) if hidden == "tanh" else dA * Z[k] * (1 - Z[k])
        elif here("other_layer_mask", k):
            dZ = dA * g_prime(hidden, Z[other], alpha)
        elif here("relu_ge", k):
            dZ = dA * np.where(Z[k] >= 0, 1.0, 0.0 if hidden == "relu" else alpha)
        else:
            dZ = dA * g_prime(hidden, Z[k], alpha)
    return {key: grads[key] for l in range(1, L + 1) for key in (f"dW{l}", f"db{l}")}
