"""Gradient-check benchmark: full check of every parameter of [784, 128, 64, 10] relu/softmax, m=256, float64
(109,386 parameters), against the NumPy reference loop and torch.autograd.gradcheck (both measured on a
subset of coordinates in the same run and extrapolated), and directional mode against torch's fast_mode.

Run:  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH=python python bench/bench_gradcheck.py [--general]
Timings are best, median and range of several runs (dnnkit._timing) (the machine is shared); directional mode and torch's fast_mode are
timed interleaved.
"""
import argparse
import os

import numpy as np

import dnnkit as dk
from dnnkit import reference as ref
from dnnkit._params import vector_to_params
from dnnkit._timing import compare, measure


def timings(f, repeat=3):
    """(seconds of each of `repeat` calls, the last result): one call per round, no warm-up (dnnkit._timing)."""
    t = measure(f, rounds=repeat, number=1, warmup=False)
    return t.times, t.result


def best(f, repeat=3):
    ts, out = timings(f, repeat)
    return min(ts), out


def fmt(ts, scale=1.0, unit="s", digits=3):
    ts = np.asarray(ts) * scale
    return (f"best {ts.min():.{digits}f} {unit}, median {np.median(ts):.{digits}f} {unit}, "
            f"range {ts.min():.{digits}f}-{ts.max():.{digits}f} ({ts.size} runs)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--m", type=int, default=256)
    ap.add_argument("--subset", type=int, default=200, help="coordinates timed for the NumPy loop and torch")
    ap.add_argument("--repeat", type=int, default=3, help="runs of the full check")
    ap.add_argument("--dir-repeat", type=int, default=20, help="interleaved runs of directional / torch fast_mode")
    ap.add_argument("--general", action="store_true", help="also time the full check with fast_path=False")
    a = ap.parse_args()
    dims = [784, 128, 64, 10]
    rng = np.random.default_rng(0)
    net = dk.Network(dims, hidden="relu", output="softmax").initialize("he", rng=0)
    X = rng.standard_normal((784, a.m))
    Y = np.eye(10)[:, rng.integers(0, 10, a.m)]
    N = net.n_params
    print(f"load: {os.getloadavg()}  cores: {os.cpu_count()}  dnnkit threads: {dk.get_num_threads()}")
    print("dnnkit BLAS:", dk.blas_info()["corename"], "| OPENBLAS_CORETYPE:", os.environ.get("OPENBLAS_CORETYPE"))
    try:
        from threadpoolctl import threadpool_info
        for p in threadpool_info():
            print("  threadpool:", p.get("internal_api"), p.get("prefix"), p.get("architecture"), p.get("num_threads"))
    except ImportError:
        print("  (threadpoolctl not installed)")

    dk.gradcheck(net, X[:, :8], Y[:, :8], mode="sample", k=2)  # warm-up
    ts_full, r = timings(lambda: dk.gradcheck(net, X, Y), a.repeat)
    t_full = min(ts_full)
    print(f"dnnkit full: {N} coordinates: {fmt(ts_full)}; difference {float(r):.2e} ({r.verdict}), "
          f"{r.n_kinks} kinks; engine paths {r.engine_stats}")
    if a.general:
        ts_gen, rg = timings(lambda: dk.gradcheck(net, X, Y, engine_options={"fast_path": False}), 1)
        print(f"dnnkit full, general path only (fast_path=False): {fmt(ts_gen)}; "
              f"max |fast - general| = {np.max(np.abs(rg.approx - r.approx)):.1e}")
    import dnnkit._core as C
    th = net.theta.copy()
    d1 = rng.standard_normal((1, N))
    d1 /= np.linalg.norm(d1)
    t_dir1, _ = best(lambda: C.gradcheck_directions(dims, "relu", "softmax", "ce", 0.01, th, X, Y, [], 0, 0, [],
                                                    0.0, 0.0, 1e-7, d1), max(a.repeat, 5))
    print(f"dnnkit one global direction (engine): {t_dir1 * 1e3:.1f} ms")

    # NumPy reference loop on a subset of coordinates, extrapolated
    idx = np.linspace(0, N - 1, a.subset).astype(np.int64)

    def J(t):
        p = vector_to_params(t, dims)
        AL, c = ref.forward_propagation(X, p, "relu", "softmax")
        return ref.compute_cost(AL, Y, p, "ce", ZL=c["Z3"])
    g = net.grad_vector.copy()
    t_np = best(lambda: ref.gradient_check(J, th, g, 1e-7, indices=idx), 1)[0] / idx.size * N
    print(f"NumPy reference loop: {t_np:.1f} s extrapolated ({idx.size} coordinates timed) -> "
          f"dnnkit full (best) is {t_np / t_full:.0f}x faster (against the issue's 334 s: {334 / t_full:.0f}x)")

    try:
        import torch
    except ImportError:
        ts_dir, rd = timings(lambda: dk.gradcheck(net, X, Y, mode="directional"), a.dir_repeat)
        print(f"dnnkit directional (1 direction per component, 6 directions): {fmt(ts_dir, 1e3, 'ms', 1)}; "
              f"difference {float(rd):.2e}")
        print("torch not installed: skipping the torch comparison")
        return
    torch.set_num_threads(os.cpu_count())
    Xt = torch.tensor(X)
    yt = torch.tensor(Y.argmax(0))
    shapes = [(dims[l], dims[l - 1]) for l in (1, 2, 3)]

    def f(theta):
        A, off = Xt, 0
        for l, (n, k) in enumerate(shapes, 1):
            W = theta[off:off + n * k].view(n, k)
            off += n * k
            b = theta[off:off + n].view(n, 1)
            off += n
            Z = W @ A + b
            A = torch.relu(Z) if l < 3 else Z
        return torch.nn.functional.cross_entropy(A.T, yt)
    tt = torch.tensor(th, requires_grad=True)
    # torch.autograd.gradcheck on all inputs is one Jacobian column per input; time it on a subset through a
    # function of the subset only (the other coordinates fixed), then extrapolate per coordinate.
    sub = torch.tensor(idx)

    def f_sub(x):
        full = tt.detach().clone()
        full = full.index_put((sub,), x)
        return f(full)
    xs = tt.detach()[sub].clone().requires_grad_(True)
    t_torch = best(lambda: torch.autograd.gradcheck(f_sub, (xs,), eps=1e-7, atol=1e-5, rtol=1e-3), 1)[0] / idx.size * N
    print(f"torch.autograd.gradcheck: {t_torch:.1f} s extrapolated ({idx.size} coordinates timed) -> "
          f"dnnkit full is {t_torch / t_full:.0f}x faster")
    # directional mode (1 localized direction per component, the default: 6 directions, the whole dk.gradcheck call
    # including net.backward and the report) against torch's fast_mode, interleaved so that both see the same load
    fast = lambda: torch.autograd.gradcheck(f, (tt,), eps=1e-7, atol=1e-5, rtol=1e-3, fast_mode=True)  # noqa: E731
    ours = lambda: dk.gradcheck(net, X, Y, mode="directional")  # noqa: E731
    t_fast, t_ours = compare([fast, ours], rounds=a.dir_repeat, number=1)
    ts_fast, ts_dir, rd = t_fast.times, t_ours.times, t_ours.result
    print(f"dnnkit directional (1 direction per component, 6 directions, localizes to W[l]/b[l]): "
          f"{fmt(ts_dir, 1e3, 'ms', 1)}; difference {float(rd):.2e}")
    print(f"torch gradcheck fast_mode (one random direction): {fmt(ts_fast, 1e3, 'ms', 1)}")
    print(f"-> dnnkit directional vs torch fast_mode: {min(ts_fast) / min(ts_dir):.2f}x (best), "
          f"{np.median(ts_fast) / np.median(ts_dir):.2f}x (median); one global direction (engine) "
          f"{min(ts_fast) / t_dir1:.2f}x")
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
