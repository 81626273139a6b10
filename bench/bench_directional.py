"""Directional mode (the whole dk.gradcheck(net, X, Y, mode="directional") call) against
torch.autograd.gradcheck(fast_mode=True), interleaved through dnnkit._timing.compare exactly as
bench/bench_gradcheck.py's directional part does it ([784, 128, 64, 10], softmax + ce, m = 256, float64, the same
net and data for both), for relu, tanh and sigmoid; medians with [min-max]; load printed before and after. The
directional part alone, without the full-check table of bench_gradcheck.py. One more interleaved alternative, the
native call alone (_core.gradcheck_directional on a fresh problem: the engine's forward + backward, the direction
draws and the differences), says how much of the whole call is native and how much the Python around it.

torch runs with as many threads as dnnkit (--threads, default: dnnkit's setting). --pause sleeps before each timed
turn (not timed) so that a thread pool the other alternative left spinning has gone idle.

Run:  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=1 PYTHONPATH=python \
          python bench/bench_directional.py [--rounds 15] [--pause 0.05] [--threads N]
"""
import argparse
import gc
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dnnkit as dk  # noqa: E402
from dnnkit import _core, _validation  # noqa: E402
from dnnkit._timing import compare  # noqa: E402
from bench_gradcheck import torch_fns, DIMS  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("rounds_pos", nargs="?", type=int, help="(old form) rounds")
    ap.add_argument("--rounds", type=int, default=15, help="interleaved rounds")
    ap.add_argument("--pause", type=float, default=0.05, help="seconds of sleep before each timed turn")
    ap.add_argument("--threads", type=int, default=None, help="threads for dnnkit and torch (default: dnnkit's)")
    ap.add_argument("--gc", action="store_true", help="leave Python's garbage collector on while timing (by default "
                    "it is off during the timed calls, as in timeit, and collected between configurations: with "
                    "torch imported a full collection costs ~10 ms and lands in whichever call crosses the "
                    "threshold)")
    a = ap.parse_args()
    rounds = a.rounds_pos or a.rounds
    if a.threads:
        dk.set_num_threads(a.threads)
    nt = dk.get_num_threads()
    torch.set_num_threads(nt)
    rng = np.random.default_rng(0)
    m = 256
    X = rng.standard_normal((784, m))
    Y = np.eye(10)[:, rng.integers(0, 10, m)]
    print("load before", os.getloadavg(), "cores", os.cpu_count(), "dnnkit threads", nt, "torch threads",
          torch.get_num_threads(), "BLAS", dk.blas_info()["corename"], "SIMD", _core.simd_info()["active"],
          "rounds", rounds, "pause", a.pause, "gc during timing", a.gc)
    try:
        import threadpoolctl
        for p in threadpoolctl.threadpool_info():
            print(f"  threadpool: {p.get('internal_api')} {p.get('prefix')} {p.get('architecture')} "
                  f"{p.get('num_threads')}")
    except ImportError:
        pass
    dk.gradcheck(dk.Network(DIMS, hidden="relu", output="softmax").initialize("he", rng=0), X[:, :8], Y[:, :8],
                 mode="sample", k=2)
    keep = _validation.normalize_keep_prob(1.0, len(DIMS) - 1)
    for name, init in (("relu", "he"), ("tanh", "xavier"), ("sigmoid", "xavier")):
        net = dk.Network(DIMS, hidden=name, output="softmax").initialize(init, rng=0)
        _, f, tt = torch_fns(net, X, Y, 1.0, 0.0, 1, np.array([0, 1]))
        theta = net.theta.copy()

        def fast():
            return torch.autograd.gradcheck(f, (tt,), eps=1e-7, atol=1e-5, rtol=1e-3, fast_mode=True)

        def ours():
            return dk.gradcheck(net, X, Y, mode="directional")

        def native():
            p = _core.GradcheckProblem(DIMS, name, "softmax", "ce", float(net.alpha), theta, X, Y, keep)
            return _core.gradcheck_directional(p, 1e-7, 1, 0, None)

        gc.collect()
        if not a.gc:
            gc.disable()
        try:
            t_ours, t_fast, t_nat = compare([ours, fast, native], rounds=rounds, number=1, pause=a.pause)
        finally:
            gc.enable()
        td, tf, tn = (np.array(t.times) * 1e3 for t in (t_ours, t_fast, t_nat))
        print(f"{name}: dnnkit directional (whole call) {np.median(td):.3g} [{td.min():.3g}-{td.max():.3g}] ms, "
              f"difference {float(t_ours.result):.1e}, verdict {t_ours.result.verdict}; torch fast_mode "
              f"{np.median(tf):.3g} [{tf.min():.3g}-{tf.max():.3g}] ms -> {np.median(tf) / np.median(td):.2f}x "
              f"median (per-round ratio median {np.median(tf / td):.2f}x [{np.min(tf / td):.2f}-{np.max(tf / td):.2f}]), "
              f"{tf.min() / td.min():.2f}x "
              f"best; native part {np.median(tn):.3g} [{tn.min():.3g}-{tn.max():.3g}] ms")
    print("load after", os.getloadavg())


if __name__ == "__main__":
    main()
