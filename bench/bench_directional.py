"""Directional mode (the whole dk.gradcheck(net, X, Y, mode="directional") call) against
torch.autograd.gradcheck(fast_mode=True), interleaved through dnnkit._timing.compare exactly as
bench/bench_gradcheck.py's directional part does it ([784, 128, 64, 10], softmax + ce, m = 256), for relu, tanh
and sigmoid; medians with [min-max]; load printed before and after. The directional part alone, without the
full-check table of bench_gradcheck.py.

Run:  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH=python python bench/bench_directional.py [rounds]
"""
import os, sys, numpy as np, torch
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dnnkit as dk
from dnnkit._timing import compare
from bench_gradcheck import torch_fns, DIMS
torch.set_num_threads(os.cpu_count())
rng = np.random.default_rng(0); m = 256
X = rng.standard_normal((784, m)); Y = np.eye(10)[:, rng.integers(0, 10, m)]
N_REP = int(sys.argv[1]) if len(sys.argv) > 1 else 15
print("load before", os.getloadavg(), "cores", os.cpu_count(), "dnnkit threads", dk.get_num_threads(), "BLAS", dk.blas_info()["corename"])
dk.gradcheck(dk.Network(DIMS, hidden="relu", output="softmax").initialize("he", rng=0), X[:, :8], Y[:, :8], mode="sample", k=2)
for name, init in (("relu", "he"), ("tanh", "xavier"), ("sigmoid", "xavier")):
    net = dk.Network(DIMS, hidden=name, output="softmax").initialize(init, rng=0)
    _, f, tt = torch_fns(net, X, Y, 1.0, 0.0, 1, np.array([0, 1]))
    fast = lambda: torch.autograd.gradcheck(f, (tt,), eps=1e-7, atol=1e-5, rtol=1e-3, fast_mode=True)
    ours = lambda: dk.gradcheck(net, X, Y, mode="directional")
    a, b = compare([ours, fast], rounds=N_REP, number=1)
    td, tf = np.array(a.times) * 1e3, np.array(b.times) * 1e3
    print(f"{name}: dnnkit directional {np.median(td):.3g} [{td.min():.3g}-{td.max():.3g}] ms, diff {float(a.result):.1e}; "
          f"torch fast_mode {np.median(tf):.3g} [{tf.min():.3g}-{tf.max():.3g}] ms -> {np.median(tf)/np.median(td):.2f}x median, {tf.min()/td.min():.2f}x best")
print("load after", os.getloadavg())
