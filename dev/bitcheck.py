#!/usr/bin/env python
"""Bit-identity check: SHA-256 hashes of dnnkit's numeric results on a fixed set of configurations.

Run it on two commits and diff the outputs: identical lines = bit-identical results. It uses only the public API
that exists both before and after the issue-8 refactor (dk.Network, Network.fit/forward/backward,
dk.dropout_mask, dk.gradcheck, GradcheckReport.approx/grad/flags, dk.set_num_threads), so it runs unchanged on
either. Usage (from a built tree):

    PYTHONPATH=python python dev/bitcheck.py > out.txt        # ~1 min on the shared dev machine

What is hashed: trained parameters for 3 nets x 2 dtypes x dropout off/on x full/mini-batch x gd/adam; dropout
masks (dk.dropout_mask, and the masks/activations/gradients of forward/backward passes with dropout, input layer
included); full gradient-check reports (approx, grad, flags, and the directional mode) of relu, leaky_relu and
tanh nets, with and without dropout and L2/L1. Every result is computed with 1 thread and with 3 threads;
the script fails if they differ (results must not depend on the thread count), and prints one hash per line.
The hashes depend on the BLAS kernel (threadpoolctl/blas_info), which the header line reports.
"""
import hashlib
import sys

import numpy as np

import dnnkit as dk

NETS = {  # name: (layer_dims, hidden, output, m) -- the last one is past the lean/wide threshold (the wide path)
    "relu-bce": ([5, 8, 6, 1], "relu", "sigmoid", 64),
    "tanh-ce": ([6, 16, 12, 3], "tanh", "softmax", 80),
    "wide-leaky-mse": ([32, 256, 64, 2], "leaky_relu", "linear", 300),
}


def _h(*arrays) -> str:
    d = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        d.update(str(a.dtype).encode() + str(a.shape).encode())
        d.update(a.tobytes())
    return d.hexdigest()[:24]


def _data(dims, output, m, seed):
    g = np.random.default_rng(seed)
    X = g.standard_normal((dims[0], m))
    if output == "softmax":
        Y = np.eye(dims[-1])[:, g.integers(0, dims[-1], m)]
    elif output == "sigmoid":
        Y = (g.random((dims[-1], m)) < 0.5).astype(float)
    else:
        Y = g.standard_normal((dims[-1], m))
    return X, Y


def _params(dims, seed):
    g = np.random.default_rng(seed)
    p = {}
    for l in range(1, len(dims)):
        p[f"W{l}"] = g.standard_normal((dims[l], dims[l - 1])) * np.sqrt(2.0 / dims[l - 1])
        p[f"b{l}"] = g.standard_normal((dims[l], 1)) * 0.1
    return p


def _net(name, dtype="float64", seed=1):
    dims, hidden, output, _ = NETS[name]
    return dk.Network(dims, hidden=hidden, output=output, dtype=dtype, params=_params(dims, seed))


def _theta(net):
    return [np.asarray(net.params[f"{k}{l}"]) for l in range(1, len(net.layer_dims)) for k in "Wb"]


def training():
    for name, (dims, hidden, output, m) in NETS.items():
        X, Y = _data(dims, output, m, 7)
        for dtype in ("float64", "float32"):
            for drop in (False, True):
                keep = [0.9] + [0.8] * (len(dims) - 2) if drop else 1.0
                for bs in (None, 32):
                    for opt in ("gd", "adam"):
                        net = _net(name, dtype)
                        lr = 0.05 if opt == "gd" else 0.005
                        net.fit(X.astype(dtype), Y.astype(dtype), epochs=6, learning_rate=lr, batch_size=bs,
                                optimizer=opt, keep_prob=keep, l2=0.1, seed=2024)
                        yield f"train {name} {dtype} dropout={int(drop)} batch={bs or 'full'} {opt}", _h(*_theta(net))


def masks():
    for cfg in [((7, 50), 0.5, 3, 2, 1), ((300, 301), 0.3, 7, 100, 1), ((64, 1000), 0.86, 2**63 + 5, 2**32 - 1, 3),
                ((17, 129), 0.999, 99, 3, 0), ((8, 4096), 0.5, 42, 17, 4)]:
        shape, kp, seed, step, layer = cfg
        yield f"dropout_mask {shape} kp={kp} seed={seed} step={step} layer={layer}", \
            _h(dk.dropout_mask(shape, kp, seed=seed, step=step, layer=layer))
    for name, (dims, hidden, output, m) in NETS.items():
        X, Y = _data(dims, output, m, 11)
        keep = [0.7] + [0.6] * (len(dims) - 2)
        for dtype in ("float64", "float32"):
            net = _net(name, dtype)
            AL, cache = net.forward(X.astype(dtype), keep_prob=keep, seed=5, step=3)
            arrs = [AL] + [cache[k] for k in sorted(cache) if isinstance(cache[k], np.ndarray)]
            yield f"forward+dropout {name} {dtype}", _h(*arrs)
            net.backward(X.astype(dtype), Y.astype(dtype), keep_prob=keep, seed=5, step=3, l2=0.2)
            yield f"backward+dropout {name} {dtype}", _h(*[np.asarray(net.grads[k]) for k in sorted(net.grads)])


def gradchecks():
    gnets = {"relu": ([5, 7, 6, 2], "relu", "softmax"), "leaky": ([4, 6, 5, 1], "leaky_relu", "sigmoid"),
             "tanh": ([5, 7, 6, 2], "tanh", "softmax"), "tanh-mse": ([3, 6, 4, 2], "tanh", "sigmoid")}
    for name, (dims, hidden, output) in gnets.items():
        loss = "mse" if name == "tanh-mse" else None
        net = dk.Network(dims, hidden=hidden, output=output, loss=loss, params=_params(dims, 3))
        X, Y = _data(dims, output, 24, 13)
        for tag, kw in (("plain", {}), ("l2l1", dict(l2=0.3, l1=0.05)),
                        ("dropout", dict(keep_prob=[0.8] + [0.7] * (len(dims) - 2), seed=9, step=2))):
            net.backward(X, Y, **kw)
            r = dk.gradcheck(net, X, Y, mode="full", **kw)
            yield f"gradcheck full {name} {tag}", _h(r.approx, r.grad, r.flags)
            r = dk.gradcheck(net, X, Y, mode="directional", n_directions=3, rng=0, **kw)
            yield f"gradcheck directional {name} {tag}", _h(r.approx, r.grad, r.flags)


def main() -> int:
    info = dk.blas_info()
    print(f"# dev/bitcheck.py  blas={info.get('corename')}")
    ok = True
    for section in (training, masks, gradchecks):
        dk.set_num_threads(1)
        one = list(section())
        dk.set_num_threads(3)
        three = list(section())
        dk.set_num_threads(0)
        for (label, h1), (_, h3) in zip(one, three):
            if h1 != h3:
                ok = False
                print(f"THREADS DIFFER {label}: 1 thread {h1}, 3 threads {h3}")
            print(f"{label:60s} {h1}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
