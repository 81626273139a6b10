"""Gradient-check benchmark: full check of every parameter of [784, 128, 64, 10] softmax + ce, m=256, float64
(109,386 parameters), one row per hidden activation (relu, leaky_relu, tanh, sigmoid, linear) plus rows with
dropout and with L2, against the course's NumPy loop (dnnkit.reference.gradient_check) and
torch.autograd.gradcheck, both timed on a subset of coordinates in the same run and extrapolated; where the
remaining time goes (native engine: series/Jacobian preparation vs per-coordinate work; net.backward and the
Python report); and directional mode against torch's fast_mode.

Run:  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH=python python bench/bench_gradcheck.py [--rounds 5]

The machine is shared: the alternatives are interleaved round by round (dnnkit full, NumPy subset, torch subset
for each row in turn), and the table gives medians with [min - max] ranges over the rounds; the load average is
printed before and after.
"""
import argparse
import os

import numpy as np

import dnnkit as dk
import dnnkit._core as C
from dnnkit import reference as ref
from dnnkit._params import vector_to_params
from dnnkit._timing import compare

DIMS = [784, 128, 64, 10]
# name, hidden, init, keep_prob, l2
ROWS = [
    ("relu", "relu", "he", 1.0, 0.0),
    ("leaky_relu", "leaky_relu", "he", 1.0, 0.0),
    ("tanh", "tanh", "xavier", 1.0, 0.0),
    ("sigmoid", "sigmoid", "xavier", 1.0, 0.0),
    ("linear", "linear", "xavier", 1.0, 0.0),
    ("relu, dropout 0.8", "relu", "he", 0.8, 0.0),
    ("tanh, dropout 0.8", "tanh", "xavier", 0.8, 0.0),
    ("sigmoid, dropout 0.8", "sigmoid", "xavier", 0.8, 0.0),
    ("relu, L2 0.7", "relu", "he", 1.0, 0.7),
    ("tanh, L2 0.7", "tanh", "xavier", 1.0, 0.7),
    ("sigmoid, L2 0.7", "sigmoid", "xavier", 1.0, 0.7),
]


def med(ts):
    ts = np.asarray(ts)
    return f"{np.median(ts):.3g} [{ts.min():.3g}-{ts.max():.3g}]"


def numpy_loop(net, X, Y, keep, l2, seed, idx):
    """The course's loop (dnnkit.reference.gradient_check) on idx, as a function to time."""
    dims, L = list(net.layer_dims), net.L
    kp = ref.normalize_keep_prob(keep, L)
    masks = [None if kp[l] == 1.0 else dk.dropout_mask((dims[l], X.shape[1]), kp[l], seed, 0, l) for l in range(L)]

    def J(t):
        p = vector_to_params(t, dims)
        AL, c = ref.forward_propagation(X, p, net.hidden, "softmax", keep_prob=kp, masks=masks, alpha=net.alpha)
        return ref.compute_cost(AL, Y, p, "ce", l2, ZL=c[f"Z{L}"])
    th = net.theta.copy()
    g = np.zeros_like(th)
    return lambda: ref.gradient_check(J, th, g, 1e-7, indices=idx)


def torch_fns(net, X, Y, keep, l2, seed, idx):
    """(torch.autograd.gradcheck on the coordinates idx, as a function to time; f(theta); theta)."""
    import torch
    dims, L = list(net.layer_dims), net.L
    kp = ref.normalize_keep_prob(keep, L)
    m = X.shape[1]
    masks = [None if kp[l] == 1.0 else torch.tensor(dk.dropout_mask((dims[l], m), kp[l], seed, 0, l) / kp[l])
             for l in range(L)]
    Xt = torch.tensor(X)
    yt = torch.tensor(Y.argmax(0))
    shapes = [(dims[l], dims[l - 1]) for l in range(1, L + 1)]
    act = {"relu": torch.relu, "leaky_relu": lambda z: torch.nn.functional.leaky_relu(z, net.alpha),
           "tanh": torch.tanh, "sigmoid": torch.sigmoid, "linear": lambda z: z}[net.hidden]

    def f(theta):
        A, off, reg = Xt if masks[0] is None else Xt * masks[0], 0, 0.0
        for l, (n, k) in enumerate(shapes, 1):
            W = theta[off:off + n * k].view(n, k)
            off += n * k
            b = theta[off:off + n].view(n, 1)
            off += n
            reg = reg + (l2 / (2 * m)) * (W * W).sum()
            Z = W @ A + b
            A = act(Z) if l < L else Z
            if l < L and masks[l] is not None:
                A = A * masks[l]
        return torch.nn.functional.cross_entropy(A.T, yt) + reg
    tt = torch.tensor(net.theta.copy(), requires_grad=True)
    sub = torch.tensor(idx)

    def f_sub(x):
        return f(tt.detach().clone().index_put((sub,), x))
    xs = tt.detach()[sub].clone().requires_grad_(True)
    return lambda: torch.autograd.gradcheck(f_sub, (xs,), eps=1e-7, atol=1e-5, rtol=1e-3), f, tt


def engine_args(net, X, Y, keep, l2, seed):
    L = net.L
    kp = ref.normalize_keep_prob(keep, L)
    keepv = [] if all(k == 1.0 for k in kp) else list(kp)
    return (list(net.layer_dims), net.hidden, "softmax", "ce", net.alpha, net.theta.copy(), X, Y, keepv, seed, 0, [],
            l2, 0.0)


def engine_call(args, idx, eps=1e-7):
    # a fresh problem per call, as dk.gradcheck builds one per check (its cached pass is part of the engine's time)
    return C.gradcheck_coords(C.GradcheckProblem(*args), eps, idx)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--m", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (medians and ranges over them)")
    ap.add_argument("--subset", type=int, default=60, help="coordinates timed for the NumPy loop and torch")
    ap.add_argument("--dir-repeat", type=int, default=15, help="interleaved runs of directional / torch fast_mode")
    ap.add_argument("--no-torch", action="store_true")
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    X = rng.standard_normal((784, a.m))
    Y = np.eye(10)[:, rng.integers(0, 10, a.m)]
    print(f"load before: {os.getloadavg()}  cores: {os.cpu_count()}  dnnkit threads: {dk.get_num_threads()}  "
          f"SIMD: {C.simd_info()}")
    print("dnnkit BLAS:", dk.blas_info()["corename"], "| OPENBLAS_CORETYPE:", os.environ.get("OPENBLAS_CORETYPE"))
    try:
        from threadpoolctl import threadpool_info
        for p in threadpool_info():
            print("  threadpool:", p.get("internal_api"), p.get("prefix"), p.get("architecture"), p.get("num_threads"))
    except ImportError:
        print("  (threadpoolctl not installed)")
    use_torch = not a.no_torch
    if use_torch:
        try:
            import torch
            torch.set_num_threads(os.cpu_count())
        except ImportError:
            use_torch = False
    nets = []
    for name, hidden, init, keep, l2 in ROWS:
        net = dk.Network(DIMS, hidden=hidden, output="softmax").initialize(init, rng=0)
        nets.append(net)
    N = nets[0].n_params
    idx = np.linspace(0, N - 1, a.subset).astype(np.int64)
    seed = 1
    dk.gradcheck(nets[0], X[:, :8], Y[:, :8], mode="sample", k=2)  # warm-up
    allidx = np.arange(N, dtype=np.int64)
    fns, keys = [], []
    for (name, hidden, init, keep, l2), net in zip(ROWS, nets):
        kw = dict(l2=l2, keep_prob=keep, seed=seed if keep < 1 else None)
        args = engine_args(net, X, Y, keep, l2, seed)
        hb = np.concatenate([np.arange(*net_bias(net, l)) for l in range(1, net.L + 1)]).astype(np.int64)
        fns += [lambda net=net, kw=kw: dk.gradcheck(net, X, Y, **kw),
                lambda args=args: engine_call(args, allidx),
                lambda args=args, hb=hb: engine_call(args, hb),
                numpy_loop(net, X, Y, keep, l2, seed, idx)]
        keys += [(name, "full"), (name, "engine"), (name, "prep"), (name, "np")]
    # every row's alternatives interleaved, round by round (dnnkit._timing.compare)
    res = {r[0]: {} for r in ROWS}
    for (name, what), t in zip(keys, compare(fns, rounds=a.rounds, number=1)):
        res[name][what] = t.times * (N / idx.size if what == "np" else 1.0)
        if what == "full":
            r = t.result
            res[name]["info"] = (float(r), r.verdict, r.engine_stats)
    nt = max(10, a.subset // 3)
    for name in res:
        res[name]["torch"] = []
    if use_torch:  # torch's loop is slow and steady: two interleaved rounds
        tf = [torch_fns(net, X, Y, keep, l2, seed, idx[:nt])[0] for (_, _, _, keep, l2), net in zip(ROWS, nets)]
        for (name, *_), t in zip(ROWS, compare(tf, rounds=2, number=1, warmup=False)):
            res[name]["torch"] = t.times * (N / nt)
    print()
    print(f"Full check of all {N} parameters, [784, 128, 64, 10] softmax + ce, m = {a.m}; seconds, median "
          f"[min-max] over {a.rounds} interleaved rounds (torch: 2); NumPy loop and torch extrapolated from "
          f"{a.subset} (torch {nt}) coordinates")
    print()
    print("| hidden | dnnkit full (s) | NumPy loop (s, extrapolated) | vs NumPy (median) | torch gradcheck (s, extrap.) "
          "| vs torch | engine (s) | of which prep. + output layer (s) | difference, verdict | engine paths |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, *_ in ROWS:
        d = res[name]
        ratio = np.median(d["np"]) / np.median(d["full"])
        rlo = min(d["np"]) / max(d["full"])
        rhi = max(d["np"]) / min(d["full"])
        tt = med(d["torch"]) if len(d["torch"]) else "-"
        tr = f"{np.median(d['torch']) / np.median(d['full']):,.0f}x" if len(d["torch"]) else "-"
        diff, verdict, st = d["info"]
        print(f"| {name} | {med(d['full'])} | {med(d['np'])} | **{ratio:,.0f}x** [{rlo:,.0f}-{rhi:,.0f}] | {tt} | {tr} "
              f"| {med(d['engine'])} | {med(d['prep'])} | {diff:.1e} {verdict} | {st} |")
    print()
    print("engine = the native _core.gradcheck_coords call alone; the rest of 'full' is net.backward and the Python "
          "report. prep = the same call on one coordinate per unit (the biases): per-unit series / Jacobians and "
          "the output layer; engine - prep ~ the per-coordinate work.")

    # directional mode vs torch fast_mode, interleaved
    if use_torch:
        import torch
        for name in ("relu", "tanh", "sigmoid"):
            k = [r[0] for r in ROWS].index(name)
            net = nets[k]
            _, f, tt = torch_fns(net, X, Y, 1.0, 0.0, seed, idx[:2])
            fast = lambda: torch.autograd.gradcheck(f, (tt,), eps=1e-7, atol=1e-5, rtol=1e-3, fast_mode=True)  # noqa
            ours = lambda: dk.gradcheck(net, X, Y, mode="directional")  # noqa: E731
            t_ours, t_fast = compare([ours, fast], rounds=a.dir_repeat, number=1)
            td, tf, rd = t_ours.times, t_fast.times, t_ours.result
            print(f"directional ({name}; 1 direction per component, 6 directions, the whole dk.gradcheck call): "
                  f"{med(np.array(td) * 1e3)} ms, difference {float(rd):.1e}; torch fast_mode (1 random direction): "
                  f"{med(np.array(tf) * 1e3)} ms -> {np.median(tf) / np.median(td):.2f}x (median), "
                  f"{min(tf) / min(td):.2f}x (best)")
    print(f"load after: {os.getloadavg()}")


def net_bias(net, l):
    """[start, end) of b[l] in theta."""
    dims = list(net.layer_dims)
    off = 0
    for k in range(1, l + 1):
        off += dims[k] * dims[k - 1]
        if k == l:
            return off, off + dims[k]
        off += dims[k]


if __name__ == "__main__":
    main()
