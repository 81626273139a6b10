"""The plain NumPy reference: course-style, readable, the oracle of the tests.

Conventions (those of the seeds):
    X is (n_x, m), examples as columns; Y is (n_y, m).
    W[l] is (n[l], n[l-1]), b[l] is (n[l], 1); keys "W1", "b1", ..., gradients "dW1", "db1", ...
    Hidden activations: relu, leaky_relu (slope ``alpha``), tanh, sigmoid, linear.
    Output / loss pairs: (sigmoid, bce), (softmax, ce), (linear, mse), (sigmoid, mse).
    J = (1/m) sum(loss) + (l2/(2m)) sum_l ||W[l]||_F^2 + (l1/(2m)) sum_l sum|W[l]|   (biases not regularized)
    mse: per-example loss 0.5 * ||a - y||^2, so J = (1/(2m)) sum((A - Y)^2).
    Inverted dropout: D = rand < keep_prob; A = A * D; A = A / keep_prob (never on the output layer).

keep_prob / masks conventions: a float applies to every hidden layer 1..L-1; a sequence of length L-1
lists the hidden layers; a sequence of length L is [input, hidden_1, ..., hidden_{L-1}].
Dropout happens on layer l exactly when its keep_prob is < 1. ``masks`` (same length convention, entries
0/1 arrays of shape (n[l], m) or None) replace the random draw on those layers.
RNG for drawn masks: None uses the global ``np.random`` (as the course does after ``np.random.seed``),
an int is ``np.random.default_rng(seed)``, or pass a Generator / RandomState.
"""
from __future__ import annotations

import numpy as np

from ._params import params_to_vector, vector_to_params
from .init import initialize_parameters

__all__ = [
    "HIDDEN_ACTIVATIONS", "OUTPUT_ACTIVATIONS", "LOSSES", "VALID_PAIRS",
    "sigmoid", "relu", "leaky_relu", "tanh", "linear", "softmax", "activation_backward",
    "normalize_keep_prob", "forward_propagation", "compute_cost", "backward_propagation",
    "cost_and_gradients", "predict", "gradient_check", "gradient_check_n",
    "update_parameters", "initialize_velocity", "update_parameters_with_momentum", "initialize_adam",
    "update_parameters_with_adam", "model",
    "params_to_vector", "vector_to_params", "initialize_parameters",
]

HIDDEN_ACTIVATIONS = ("relu", "leaky_relu", "tanh", "sigmoid", "linear")
OUTPUT_ACTIVATIONS = ("sigmoid", "softmax", "linear")
LOSSES = ("bce", "ce", "mse")
VALID_PAIRS = (("sigmoid", "bce"), ("softmax", "ce"), ("linear", "mse"), ("sigmoid", "mse"))


# ----------------------------------------------------------------------------- activations

def sigmoid(Z):
    # 1 / (1 + exp(-Z)), written as exp(-log(1 + exp(-Z))) so that it never overflows
    return np.exp(-np.logaddexp(0.0, -Z))


def relu(Z):
    return np.maximum(0, Z)


def leaky_relu(Z, alpha=0.01):
    return np.where(Z > 0, Z, alpha * Z)


def tanh(Z):
    return np.tanh(Z)


def linear(Z):
    return np.array(Z, copy=True)


def softmax(Z):
    # column-wise; subtracting the column max does not change the result and avoids overflow
    E = np.exp(Z - np.max(Z, axis=0, keepdims=True))  # (n, m)
    return E / np.sum(E, axis=0, keepdims=True)


def _activation(name, Z, alpha=0.01):
    if name == "relu":
        return relu(Z)
    if name == "leaky_relu":
        return leaky_relu(Z, alpha)
    if name == "tanh":
        return tanh(Z)
    if name == "sigmoid":
        return sigmoid(Z)
    if name == "linear":
        return linear(Z)
    if name == "softmax":
        return softmax(Z)
    raise ValueError(f"unknown activation {name!r}; valid: {HIDDEN_ACTIVATIONS + ('softmax',)}")


def activation_backward(dA, Z, name, alpha=0.01):
    """dZ = dA * g'(Z) for activation ``name`` (softmax: the full column Jacobian)."""
    if name == "relu":
        return dA * (Z > 0)
    if name == "leaky_relu":
        return dA * np.where(Z > 0, 1.0, alpha)
    if name == "tanh":
        return dA * (1 - np.tanh(Z) ** 2)
    if name == "sigmoid":
        s = sigmoid(Z)
        return dA * s * (1 - s)
    if name == "linear":
        return np.array(dA, copy=True)
    if name == "softmax":
        S = softmax(Z)
        return S * (dA - np.sum(dA * S, axis=0, keepdims=True))
    raise ValueError(f"unknown activation {name!r}; valid: {HIDDEN_ACTIVATIONS + ('softmax',)}")


def _check_names(hidden, output, loss=None):
    if hidden not in HIDDEN_ACTIVATIONS:
        raise ValueError(f"unknown hidden activation {hidden!r}; valid: {HIDDEN_ACTIVATIONS}")
    if output not in OUTPUT_ACTIVATIONS:
        raise ValueError(f"unknown output activation {output!r}; valid: {OUTPUT_ACTIVATIONS}")
    if loss is not None:
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; valid: {LOSSES}")
        if (output, loss) not in VALID_PAIRS:
            raise ValueError(f"output {output!r} with loss {loss!r} is not supported; valid pairs: {VALID_PAIRS}")


def _num_layers(parameters):
    L = 0
    while f"W{L + 1}" in parameters:
        L += 1
    if L == 0:
        raise ValueError("parameters has no 'W1'")
    return L


# ----------------------------------------------------------------------------- dropout helpers

def normalize_keep_prob(keep_prob, L):
    """-> list of length L: index 0 is the input layer, 1..L-1 the hidden layers (output: never)."""
    if np.ndim(keep_prob) == 0:
        kp = [1.0] + [float(keep_prob)] * (L - 1)
    else:
        values = [float(k) for k in keep_prob]
        if len(values) == L - 1:
            kp = [1.0] + values
        elif len(values) == L:
            kp = values
        else:
            raise ValueError(f"keep_prob needs {L - 1} (hidden) or {L} (input + hidden) values, got {len(values)}")
    for k in kp:
        if not 0.0 < k <= 1.0:
            raise ValueError(f"keep_prob values must be in (0, 1], got {k}")
    return kp


def _normalize_masks(masks, L):
    """-> list of length L (index 0 = input), entries None or 0/1 float arrays."""
    if masks is None:
        return [None] * L
    masks = list(masks)
    if len(masks) == L - 1:
        masks = [None] + masks
    elif len(masks) != L:
        raise ValueError(f"masks needs {L - 1} (hidden) or {L} (input + hidden) entries, got {len(masks)}")
    return [None if D is None else np.asarray(D, dtype=np.float64) for D in masks]


def _dropout_rng(rng):
    if rng is None:
        return np.random  # the global state, like the course's np.random.seed(...); np.random.rand(...)
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    if isinstance(rng, (np.random.Generator, np.random.RandomState)):
        return rng
    raise TypeError(f"rng must be None, an int, a Generator or a RandomState, got {type(rng).__name__}")


def _rand(rng, shape):
    if isinstance(rng, np.random.Generator):
        return rng.random(shape)
    return rng.rand(shape[0], shape[1])


def _dropout(A, keep_prob, D, rng, l):
    """Inverted dropout on A (n, m). Returns (A, D)."""
    if D is None:
        D = (_rand(rng, A.shape) < keep_prob).astype(np.float64)  # (n, m) of 0/1
    elif D.shape != A.shape:
        raise ValueError(f"mask for layer {l} has shape {D.shape}, expected {A.shape}")
    elif not np.all((D == 0) | (D == 1)):
        raise ValueError(f"mask for layer {l} must contain only 0 and 1")
    A = A * D
    A = A / keep_prob
    return A, D


# ----------------------------------------------------------------------------- forward

def forward_propagation(X, parameters, hidden="relu", output="sigmoid", keep_prob=1.0, masks=None,
                        rng=None, alpha=0.01):
    """-> (AL, caches); caches = {"A0", "Z1", "A1", "D1", ..., "ZL", "AL"}.

    "A{l}" is after dropout; "D{l}" only for layers with dropout ("A0" is X, after input dropout if any).
    """
    _check_names(hidden, output)
    L = _num_layers(parameters)
    kp = normalize_keep_prob(keep_prob, L)
    masks = _normalize_masks(masks, L)
    for l in range(L):
        if masks[l] is not None and kp[l] == 1.0:
            # an all-ones mask is what keep_prob 1 draws (no dropout there); a 0 would drop an undroppable unit
            if np.any(masks[l] != 1):
                raise ValueError(f"the mask for layer {l} drops units but its keep_prob is 1, which keeps every "
                                 "unit; pass the keep_prob the mask was drawn with")
            masks[l] = None
    need_draw = any(kp[l] < 1.0 and masks[l] is None for l in range(L))
    rng = _dropout_rng(rng) if need_draw else None

    caches = {}
    A = X                                                   # (n0, m)
    if kp[0] < 1.0:
        A, caches["D0"] = _dropout(A, kp[0], masks[0], rng, 0)
    caches["A0"] = A
    for l in range(1, L + 1):
        W = parameters[f"W{l}"]                             # (n[l], n[l-1])
        b = parameters[f"b{l}"]                             # (n[l], 1)
        Z = np.dot(W, A) + b                                # (n[l], m)
        A = _activation(hidden if l < L else output, Z, alpha)
        if l < L and kp[l] < 1.0:
            A, caches[f"D{l}"] = _dropout(A, kp[l], masks[l], rng, l)
        caches[f"Z{l}"] = Z
        caches[f"A{l}"] = A
    return A, caches


# ----------------------------------------------------------------------------- cost

def _regularization(parameters, m, l2, l1):
    if not l2 and not l1:
        return 0.0
    if parameters is None:
        raise ValueError("l2 / l1 regularization needs the parameters")
    L = _num_layers(parameters)
    Ws = [parameters[f"W{l}"] for l in range(1, L + 1)]
    reg = 0.0
    if l2:
        reg += l2 / (2 * m) * sum(np.sum(np.square(W)) for W in Ws)
    if l1:
        reg += l1 / (2 * m) * sum(np.sum(np.abs(W)) for W in Ws)
    return reg


def compute_cost(AL, Y, parameters=None, loss="bce", l2=0.0, l1=0.0, ZL=None):
    """J as a Python float. With ZL (the output logits) bce / ce use the stable logit forms."""
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; valid: {LOSSES}")
    AL = np.asarray(AL)
    Y = np.asarray(Y).reshape(AL.shape)                     # (n_y, m); accepts the course's 1-D Y
    m = AL.shape[1]
    if loss == "mse":
        cost = 1.0 / (2 * m) * np.sum(np.square(AL - Y))
    elif ZL is None and loss == "bce":
        cost = -1.0 / m * np.sum(Y * np.log(AL) + (1 - Y) * np.log(1 - AL))
    elif ZL is None:                                         # ce
        cost = -1.0 / m * np.sum(Y * np.log(AL))
    elif loss == "bce":
        Z = np.asarray(ZL)
        # -[y log s(z) + (1-y) log(1-s(z))] = max(z,0) - z*y + log(1 + exp(-|z|))
        cost = 1.0 / m * np.sum(np.maximum(Z, 0) - Z * Y + np.log1p(np.exp(-np.abs(Z))))
    else:                                                    # ce
        Z = np.asarray(ZL)
        zmax = np.max(Z, axis=0, keepdims=True)
        logsumexp = zmax + np.log(np.sum(np.exp(Z - zmax), axis=0, keepdims=True))  # (1, m)
        # -sum_k y_k log softmax(z)_k = sum_k y_k * logsumexp(z) - sum_k y_k z_k
        cost = 1.0 / m * np.sum(np.sum(Y, axis=0, keepdims=True) * logsumexp - np.sum(Y * Z, axis=0, keepdims=True))
    return float(cost + _regularization(parameters, m, l2, l1))


# ----------------------------------------------------------------------------- backward

def _output_dZ(AL, Y, output, loss):
    if (output, loss) in (("sigmoid", "bce"), ("softmax", "ce"), ("linear", "mse")):
        return AL - Y
    if (output, loss) == ("sigmoid", "mse"):
        return (AL - Y) * AL * (1 - AL)
    raise ValueError(f"output {output!r} with loss {loss!r} is not supported; valid pairs: {VALID_PAIRS}")


def backward_propagation(X, Y, caches, parameters, hidden="relu", output="sigmoid", loss="bce",
                         l2=0.0, l1=0.0, keep_prob=1.0, alpha=0.01):
    """-> grads {"dW1", "db1", ..., "dWL", "dbL"} (the keep_prob must be the one used in forward)."""
    _check_names(hidden, output, loss)
    L = _num_layers(parameters)
    kp = normalize_keep_prob(keep_prob, L)
    AL = caches[f"A{L}"]
    Y = np.asarray(Y).reshape(AL.shape)
    m = AL.shape[1]

    grads = {}
    dZ = _output_dZ(AL, Y, output, loss)                    # (n[L], m)
    for l in range(L, 0, -1):
        A_prev = caches[f"A{l - 1}"]                        # (n[l-1], m)
        W = parameters[f"W{l}"]                             # (n[l], n[l-1])
        dW = 1.0 / m * np.dot(dZ, A_prev.T)                 # (n[l], n[l-1])
        if l2:
            dW = dW + l2 / m * W
        if l1:
            dW = dW + l1 / (2 * m) * np.sign(W)
        grads[f"dW{l}"] = dW
        grads[f"db{l}"] = 1.0 / m * np.sum(dZ, axis=1, keepdims=True)  # (n[l], 1)
        if l > 1:
            dA_prev = np.dot(W.T, dZ)                       # (n[l-1], m)
            if f"D{l - 1}" in caches:
                if kp[l - 1] == 1.0:
                    raise ValueError(f"caches hold a dropout mask D{l - 1} but keep_prob for that layer is 1")
                dA_prev = dA_prev * caches[f"D{l - 1}"]
                dA_prev = dA_prev / kp[l - 1]
            dZ = activation_backward(dA_prev, caches[f"Z{l - 1}"], hidden, alpha)
    # course order: dW1, db1, dW2, db2, ...
    return {k: grads[k] for l in range(1, L + 1) for k in (f"dW{l}", f"db{l}")}


def cost_and_gradients(X, Y, parameters, hidden="relu", output="sigmoid", loss="bce", l2=0.0, l1=0.0,
                       keep_prob=1.0, masks=None, alpha=0.01, rng=None):
    """Forward, stable cost (from the output logits), backward. -> (J, grads)."""
    _check_names(hidden, output, loss)
    AL, caches = forward_propagation(X, parameters, hidden, output, keep_prob, masks, rng, alpha)
    L = _num_layers(parameters)
    J = compute_cost(AL, Y, parameters, loss, l2, l1, ZL=caches[f"Z{L}"])
    grads = backward_propagation(X, Y, caches, parameters, hidden, output, loss, l2, l1, keep_prob, alpha)
    return J, grads


def predict(X, parameters, hidden="relu", output="sigmoid", alpha=0.01, loss=None):
    """Classification (bce / ce): sigmoid -> (AL > 0.5) as int, (n_y, m); softmax -> argmax class, (m,).
    Regression (mse, with a linear or a sigmoid output): AL itself. ``loss`` defaults to the output's
    natural one (sigmoid: bce), so a sigmoid+mse net must pass ``loss="mse"`` (as dnnkit.Network knows it)."""
    AL, _ = forward_propagation(X, parameters, hidden, output, alpha=alpha)
    if output == "sigmoid" and loss != "mse":
        return (AL > 0.5).astype(int)
    if output == "softmax":
        return np.argmax(AL, axis=0)
    return AL


# ----------------------------------------------------------------------------- gradient checking

def gradient_check(cost_fn, theta, grad, epsilon=1e-7, indices=None):
    """The seeds' two-sided check. -> (difference, gradapprox).

    cost_fn(theta) -> float, called with a perturbed copy of theta (same shape as theta).
    gradapprox is 1-D over the checked coordinates: all of them, or ``indices`` (flat indices).
    difference = ||grad - gradapprox|| / (||grad|| + ||gradapprox||) over those coordinates.
    """
    theta = np.array(theta, dtype=np.float64)
    grad = np.asarray(grad, dtype=np.float64).reshape(-1)
    if grad.size != theta.size:
        raise ValueError(f"grad has {grad.size} entries, theta has {theta.size}")
    idx = np.arange(theta.size) if indices is None else np.asarray(indices, dtype=np.intp).reshape(-1)
    gradapprox = np.zeros(idx.size)
    for k, i in enumerate(idx):
        theta_plus = np.copy(theta)
        theta_plus.flat[i] = theta_plus.flat[i] + epsilon
        J_plus = cost_fn(theta_plus)
        theta_minus = np.copy(theta)
        theta_minus.flat[i] = theta_minus.flat[i] - epsilon
        J_minus = cost_fn(theta_minus)
        gradapprox[k] = (J_plus - J_minus) / (2 * epsilon)
    g = grad[idx]
    numerator = np.linalg.norm(g - gradapprox)
    denominator = np.linalg.norm(g) + np.linalg.norm(gradapprox)
    difference = 0.0 if denominator == 0 else float(numerator / denominator)
    return difference, gradapprox


def gradient_check_n(parameters, gradients, X, Y, epsilon=1e-7, hidden="relu", output="sigmoid", loss="bce",
                     l2=0.0, l1=0.0, alpha=0.01, print_msg=False):
    """Course-style check of ``gradients`` for ``parameters`` (stable cost, no dropout). -> difference."""
    _check_names(hidden, output, loss)
    L = _num_layers(parameters)
    layer_dims = [parameters["W1"].shape[1]] + [parameters[f"W{l}"].shape[0] for l in range(1, L + 1)]
    theta = params_to_vector(parameters).astype(np.float64)
    grad = params_to_vector(gradients, prefix="d").astype(np.float64)

    def J(th):
        p = vector_to_params(th, layer_dims)
        AL, caches = forward_propagation(X, p, hidden, output, alpha=alpha)
        return compute_cost(AL, Y, p, loss, l2, l1, ZL=caches[f"Z{L}"])

    difference, _ = gradient_check(J, theta, grad, epsilon)
    if print_msg:
        if difference > 2e-7:
            print(f"There is a mistake in the backward propagation! difference = {difference}")
        else:
            print(f"Your backward propagation works perfectly fine! difference = {difference}")
    return difference


# ----------------------------------------------------------------------------- training

def update_parameters(parameters, grads, learning_rate):
    """Plain gradient descent: W = W - lr * dW, b = b - lr * db. Returns a new dict."""
    L = _num_layers(parameters)
    new = {}
    for l in range(1, L + 1):
        new[f"W{l}"] = parameters[f"W{l}"] - learning_rate * grads[f"dW{l}"]
        new[f"b{l}"] = parameters[f"b{l}"] - learning_rate * grads[f"db{l}"]
    return new


def initialize_velocity(parameters):
    """Momentum's v: {"dW1": zeros like W1, "db1": zeros like b1, ...}."""
    L = _num_layers(parameters)
    v = {}
    for l in range(1, L + 1):
        v[f"dW{l}"] = np.zeros_like(parameters[f"W{l}"])
        v[f"db{l}"] = np.zeros_like(parameters[f"b{l}"])
    return v


def update_parameters_with_momentum(parameters, grads, v, beta, learning_rate):
    """One momentum step: v = beta v + (1 - beta) dW; W = W - lr v (and the same for b).
    Returns new dicts (parameters, v)."""
    L = _num_layers(parameters)
    new, v_new = {}, {}
    for l in range(1, L + 1):
        for p in ("W", "b"):
            v_new[f"d{p}{l}"] = beta * v[f"d{p}{l}"] + (1 - beta) * grads[f"d{p}{l}"]
            new[f"{p}{l}"] = parameters[f"{p}{l}"] - learning_rate * v_new[f"d{p}{l}"]
    return new, v_new


def initialize_adam(parameters):
    """Adam's v (first moment) and s (second moment): zeros like each W / b. -> (v, s)."""
    return initialize_velocity(parameters), initialize_velocity(parameters)


def update_parameters_with_adam(parameters, grads, v, s, t, learning_rate=0.01, beta1=0.9, beta2=0.999,
                                epsilon=1e-8):
    """One Adam step (t counts steps from 1, for the bias correction):

        v = beta1 v + (1 - beta1) dW          v_corrected = v / (1 - beta1^t)
        s = beta2 s + (1 - beta2) dW^2        s_corrected = s / (1 - beta2^t)
        W = W - lr v_corrected / (sqrt(s_corrected) + epsilon)

    Returns new dicts (parameters, v, s)."""
    L = _num_layers(parameters)
    new, v_new, s_new = {}, {}, {}
    for l in range(1, L + 1):
        for p in ("W", "b"):
            g = grads[f"d{p}{l}"]
            v_new[f"d{p}{l}"] = beta1 * v[f"d{p}{l}"] + (1 - beta1) * g
            s_new[f"d{p}{l}"] = beta2 * s[f"d{p}{l}"] + (1 - beta2) * g * g
            v_corrected = v_new[f"d{p}{l}"] / (1 - beta1 ** t)
            s_corrected = s_new[f"d{p}{l}"] / (1 - beta2 ** t)
            new[f"{p}{l}"] = parameters[f"{p}{l}"] - learning_rate * v_corrected / (np.sqrt(s_corrected) + epsilon)
    return new, v_new, s_new


def model(X, Y, layer_dims, learning_rate=0.0075, num_iterations=3000, hidden="relu", output="sigmoid",
          loss="bce", l2=0.0, keep_prob=1.0, init="he", rng=None, print_cost=False, l1=0.0, alpha=0.01,
          return_costs=False, optimizer="gd", beta=0.9, beta1=0.9, beta2=0.999, epsilon=1e-8):
    """The course's training loop (full batch): optimizer "gd", "momentum" (``beta``) or "adam"
    (``beta1``, ``beta2``, ``epsilon``).

    rng is used for the initialization and the dropout masks (an int seeds one Generator for both).
    Returns the parameters, or (parameters, costs) with one cost per iteration if ``return_costs``.
    """
    _check_names(hidden, output, loss)
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        rng = np.random.default_rng(int(rng))
    if optimizer not in ("gd", "momentum", "adam"):
        raise ValueError(f"unknown optimizer {optimizer!r}; valid: gd, momentum, adam")
    parameters = initialize_parameters(layer_dims, init, rng=rng)
    if optimizer == "momentum":
        v = initialize_velocity(parameters)
    elif optimizer == "adam":
        v, s = initialize_adam(parameters)
    costs = []
    for i in range(num_iterations):
        cost, grads = cost_and_gradients(X, Y, parameters, hidden, output, loss, l2, l1, keep_prob,
                                         alpha=alpha, rng=rng)
        if optimizer == "gd":
            parameters = update_parameters(parameters, grads, learning_rate)
        elif optimizer == "momentum":
            parameters, v = update_parameters_with_momentum(parameters, grads, v, beta, learning_rate)
        else:
            parameters, v, s = update_parameters_with_adam(parameters, grads, v, s, i + 1, learning_rate, beta1,
                                                           beta2, epsilon)
        costs.append(cost)
        if print_cost and i % 1000 == 0:
            print(f"Cost after iteration {i}: {cost}")
    return (parameters, costs) if return_costs else parameters
