"""One forward+backward (`Network.backward`) of a fully-connected net: dnnkit's native core vs
dnnkit.reference (NumPy) vs PyTorch CPU eager, measured in the same run, on a small [2,20,3,1] m=300, a medium
[784,128,64,10] m=256 and a large [784,1024,1024,10] m=1024 net, float64 and float32; and `dk.dropout_mask`
against NumPy's `default_rng().random(shape) < keep_prob`. Not a test: prints tables (--json writes the numbers).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/bench_core.py
"""
from __future__ import annotations

import argparse
import json
import os
import platform

import numpy as np

import dnnkit as dk
from dnnkit import reference as R
from dnnkit._timing import compare


def interleaved(fns: dict) -> dict:
    """name -> (best, median, (lo, hi)) in seconds per call: 7 interleaved rounds of ~0.05 s (dnnkit._timing)."""
    ts = compare(list(fns.values()), rounds=7, min_time=0.05)
    return {name: (t.best, t.median, (t.best, t.worst)) for name, t in zip(fns, ts)}


NETS = [("small", [2, 20, 3, 1], 300), ("medium", [784, 128, 64, 10], 256), ("large", [784, 1024, 1024, 10], 1024)]


def bench(dims, m, dtype, threads, hidden="relu", output="softmax"):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((dims[0], m)).astype(dtype)
    Y = np.eye(dims[-1])[:, rng.integers(0, dims[-1], m)].astype(dtype)
    net = dk.Network(dims, hidden=hidden, output=output, dtype=dtype)
    net.initialize("he", rng=0)
    params = {k: v.copy() for k, v in net.params.items()}
    dk.set_num_threads(threads)

    def native():
        net.backward(X, Y)

    def reference():
        AL, caches = R.forward_propagation(X, params, hidden, output)
        R.backward_propagation(X, Y, caches, params, hidden, output, "ce")

    fns = {"dnnkit": native, "reference (NumPy)": reference}
    try:
        import torch

        torch.set_num_threads(threads)
        tdt = torch.float64 if dtype == "float64" else torch.float32
        tp = {k: torch.tensor(v, dtype=tdt, requires_grad=True) for k, v in params.items()}
        tX, ty = torch.tensor(X), torch.tensor(Y.argmax(0))
        L = len(dims) - 1

        def torch_step():
            A = tX
            for l in range(1, L + 1):
                Z = tp[f"W{l}"] @ A + tp[f"b{l}"]
                A = torch.relu(Z) if l < L else Z
            J = torch.nn.functional.cross_entropy(A.T, ty)
            for v in tp.values():
                v.grad = None
            J.backward()

        fns[f"torch {torch.__version__} eager"] = torch_step
    except ImportError:
        pass
    return interleaved(fns)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    info = {"blas": dk.blas_info()["corename"], "threads": args.threads, "machine": platform.processor() or platform.machine(),
            "load": os.getloadavg()}
    try:
        from threadpoolctl import threadpool_info
        info["numpy_blas"] = [(p["internal_api"], p.get("architecture"), p["num_threads"]) for p in threadpool_info()]
    except ImportError:
        pass
    print("# forward+backward (Network.backward), relu hidden, softmax/ce output", info)
    out = {}
    for label, dims, m in NETS:
        for dtype in ("float64", "float32"):
            rows = bench(dims, m, dtype, args.threads)
            base = rows["dnnkit"][0]
            print(f"\n{label} {dims} m={m} {dtype}:  best ms   median ms   range ms          vs dnnkit")
            for name, (best, med, (lo, hi)) in rows.items():
                print(f"  {name:32s} {best * 1e3:8.3f}  {med * 1e3:9.3f}   {lo * 1e3:.3f}-{hi * 1e3:.3f}   "
                      f"{best / base:6.2f}x")
            out[f"{label} {dtype}"] = {k: {"best_s": v[0], "median_s": v[1], "range_s": v[2]} for k, v in rows.items()}
    shape, kp = (1024, 1024), 0.8
    gen = np.random.default_rng(0)
    dk.set_num_threads(args.threads)
    masks = interleaved({"dk.dropout_mask": lambda: dk.dropout_mask(shape, kp, seed=1, step=0, layer=1),
                         "numpy default_rng().random < p": lambda: gen.random(shape) < kp})
    n = shape[0] * shape[1]
    print(f"\ndropout masks {shape}, keep {kp}:  ns/value (best)   vs numpy")
    base = masks["numpy default_rng().random < p"][0]
    for name, (best, med, _) in masks.items():
        print(f"  {name:32s} {best / n * 1e9:8.3f}   {base / best:6.2f}x   (median {med / n * 1e9:.3f})")
    out["masks"] = {k: {"best_s": v[0], "median_s": v[1], "range_s": v[2]} for k, v in masks.items()}
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"info": info, "results": out}, f, indent=1)


if __name__ == "__main__":
    main()
