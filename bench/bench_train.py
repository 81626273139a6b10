"""Training speed: dnnkit (native loop) vs the NumPy reference (course code) vs PyTorch CPU eager.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH=python python bench/bench_train.py [--quick]

One step = forward + backward + gradient-descent update on the full batch (m examples), as the course's
"iteration". dnnkit is called as a user calls it: ``net.fit(X, Y, epochs=n, learning_rate=0.01)`` with the
default arguments (``log_every=1``: a history row — train cost, error, gradient norms, time — every epoch,
recorded by the native loop); the column "log_every=n" is the same loop reporting once (the engine alone).
The reference runs ``cost_and_gradients`` + ``update_parameters``; PyTorch runs an ``nn.Sequential`` with
``torch.optim.SGD`` in eager mode, same dtype, ``torch.set_num_threads`` = dnnkit's thread count, in a process of its
own at its own OpenMP defaults (workloads.TorchWorker; since session 5 — before, it ran in this process with dnnkit's
passive-waiting OpenMP settings, 2-4x slower than a PyTorch user sees it).
Dropout: keep_prob 0.8 on every hidden layer (``nn.Dropout(0.2)`` in PyTorch). Every figure is the median
over ``--reps`` rounds in which the alternatives take turns (dnnkit._timing.compare), with the range over
the rounds (the machine is shared: state the load). Further sections: dev-set monitoring every epoch
(``validation=``, ``EarlyStopping``), mini-batches of 64, one Python call per step (``net.backward``), the
GEMM peak of this machine (one big BLAS GEMM), dropout mask generation vs NumPy, and dnnkit interleaved
with NumPy matmuls (the single-pool design). Prints Markdown for bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import sys
import time

import numpy as np

import dnnkit as dk
from dnnkit import _core
from dnnkit import reference as ref
from dnnkit._timing import compare, measure
from workloads import LR, TorchWorker, data

CONFIGS = [("small", [2, 20, 3, 1], 300), ("medium", [784, 128, 64, 10], 256), ("large", [784, 1024, 1024, 10], 1024)]
KEEP = 0.8


def best_times(fns, steps, reps, min_time=0.2):
    """Best per-step time of each fn(n) (n steps per call) over `reps` interleaved rounds of about `min_time`
    seconds: the alternatives take turns within a round, so a burst of load from other users of this shared
    machine hits all of them alike (dnnkit._timing)."""
    ts = compare(fns, rounds=reps, min_time=min_time, inner=True, start=steps)
    if os.environ.get("BENCH_DEBUG"):
        for i, t in enumerate(ts):
            print(f"    fn{i}: {t.number} steps, {t.fmt(1e6, 'us', 1)} per step", file=sys.stderr)
    return [t.best for t in ts]


def best_time(fn, steps, reps, min_time=0.2):
    return best_times([fn], steps, reps, min_time)[0]


PAUSE = 0.2  # seconds before each turn (--pause): see timings


def timings(fns, steps, reps, min_time=0.2, pause=None):
    """dnnkit._timing.Timing of each fn(n) (n steps per call), interleaved rounds. Each turn starts after a
    `pause` (default PAUSE, not timed): NumPy's threaded OpenBLAS keeps its pthreads spinning for ~0.1 s after
    a call, and the next alternative would otherwise start on cores still busy with that spin (last session's
    reference rows collapsed to 12-539 steps/s that way)."""
    ts = compare(fns, rounds=reps, min_time=min_time, inner=True, start=steps, pause=PAUSE if pause is None else pause)
    if os.environ.get("BENCH_DEBUG"):
        for i, t in enumerate(ts):
            print(f"    fn{i}: {t.number} steps, {t.fmt(1e6, 'us', 1)} per step", file=sys.stderr)
    return ts


def rate(t):
    """steps/s: median (range over the rounds)."""
    return f"{1 / t.median:,.0f} ({1 / t.worst:,.0f}-{1 / t.best:,.0f})"


def ratio(a, b):
    """How many times faster a is than b: ratio of medians (range of the per-round ratios)."""
    r = b.times / a.times
    return f"{b.median / a.median:.1f}x ({r.min():.1f}-{r.max():.1f})"


def fit_seconds(net, X, Y, n, reps=3):
    """Best seconds per epoch of the default call net.fit(X, Y, epochs=n, learning_rate=LR, seed=1) over `reps`
    runs from the same parameters, after a 3-epoch warm-up: what bench_wait.py and bench_torch_env.py time in
    their fresh processes."""
    th = net.theta.copy()
    net.fit(X, Y, epochs=3, learning_rate=LR)
    best = np.inf
    for _ in range(reps):
        net.theta = th
        t = time.perf_counter()
        net.fit(X, Y, epochs=n, learning_rate=LR, seed=1)
        best = min(best, (time.perf_counter() - t) / n)
    return best



def output_of(dims):
    return ("sigmoid", "bce") if dims[-1] == 1 else ("softmax", "ce")


def step_flops(dims, m):
    fwd = sum(2.0 * dims[l] * dims[l - 1] * m for l in range(1, len(dims)))
    bwd_dw = fwd
    bwd_da = sum(2.0 * dims[l] * dims[l - 1] * m for l in range(2, len(dims)))
    return fwd + bwd_dw + bwd_da


def bench_dnnkit(dims, m, dtype, keep, once=False, validation=None, early_stopping=False, batch_size=None,
                 fused=None):
    """net.fit as a user calls it (default arguments: log_every=1); once=True: log_every=n (one report);
    fused=None: the automatic choice of the fused small-net step (what a user gets on this CPU); False: the BLAS
    passes also on a tiny net; True: the fused step forced on (_core.set_small_layers)."""
    out, loss = output_of(dims)
    net = dk.Network(dims, output=out, loss=loss, dtype=dtype).initialize("he", rng=0)
    X, Y = data(dims, m, dtype)
    theta0 = net.theta.copy()
    kw = dict(learning_rate=LR, keep_prob=keep, seed=1, batch_size=batch_size)
    if validation is not None:
        kw["validation"] = data(dims, validation, dtype, seed=1)
    if early_stopping:  # never stops (the run's length is the benchmark's), restores the best epoch
        kw["early_stopping"] = dk.EarlyStopping(patience=10**9, restore_best=True)

    def run(n):
        net.theta = theta0
        old = _core.set_small_layers(fused)
        try:
            net.fit(X, Y, epochs=n, log_every=n if once else 1, **kw)
        finally:
            _core.set_small_layers(old)

    return run


def blas_threads(fn, n_threads):
    """fn(n) run with NumPy's OpenBLAS limited to n_threads (threadpoolctl; None: as it is)."""
    if n_threads is None:
        return fn
    from threadpoolctl import threadpool_limits

    def run(n):
        with threadpool_limits(n_threads, user_api="blas"):
            fn(n)

    return run


def bench_reference(dims, m, dtype, keep, blas=None):
    """The course step; blas = NumPy's BLAS thread count (None: its default, all cores)."""
    return blas_threads(_bench_reference(dims, m, dtype, keep), blas)


def _bench_reference(dims, m, dtype, keep):
    out, loss = output_of(dims)
    params = {k: v.astype(dtype) for k, v in dk.initialize_parameters(dims, "he", rng=0).items()}
    X, Y = data(dims, m, dtype)
    rng = np.random.default_rng(0)

    def run(n):
        p = params
        for _ in range(n):
            _, grads = ref.cost_and_gradients(X, Y, p, "relu", out, loss, keep_prob=keep, rng=rng)
            p = ref.update_parameters(p, grads, LR)

    return run


def bench_reference_monitored(dims, m, dtype, validation, early_stopping=False):
    """The course's loop with dev-set monitoring every epoch: the step, then the dev cost (a forward pass);
    with early stopping also the comparison and a copy of the parameters at each improvement."""
    out, loss = output_of(dims)
    params = {k: v.astype(dtype) for k, v in dk.initialize_parameters(dims, "he", rng=0).items()}
    X, Y = data(dims, m, dtype)
    Xd, Yd = data(dims, validation, dtype, seed=1)

    def run(n):
        p, best, best_p = params, np.inf, None
        for _ in range(n):
            _, grads = ref.cost_and_gradients(X, Y, p, "relu", out, loss)
            p = ref.update_parameters(p, grads, LR)
            AL, _ = ref.forward_propagation(Xd, p, "relu", out)
            J = ref.compute_cost(AL, Yd, loss=loss)
            if early_stopping and J < best:
                best, best_p = J, {k: v.copy() for k, v in p.items()}

    return run


def bench_reference_minibatch(dims, m, dtype, batch):
    """The course's mini-batch loop: a fresh permutation each epoch, the batches sliced from it."""
    out, loss = output_of(dims)
    params = {k: v.astype(dtype) for k, v in dk.initialize_parameters(dims, "he", rng=0).items()}
    X, Y = data(dims, m, dtype)
    rng = np.random.default_rng(0)

    def run(n):  # n epochs
        p = params
        for _ in range(n):
            perm = rng.permutation(m)
            Xs, Ys = X[:, perm], Y[:, perm]
            for j in range(0, m, batch):
                _, grads = ref.cost_and_gradients(Xs[:, j:j + batch], Ys[:, j:j + batch], p, "relu", out, loss)
                p = ref.update_parameters(p, grads, LR)

    return run


def bench_backward_loop(dims, m, dtype, update=True):
    """A course-style user loop around dnnkit: one net.backward call per step, the update in NumPy
    (update=False: net.backward alone, to split the loop's time)."""
    out, loss = output_of(dims)
    net = dk.Network(dims, output=out, loss=loss, dtype=dtype).initialize("he", rng=0)
    X, Y = data(dims, m, dtype)
    theta, g = net.theta, net.grad_vector
    lr = dtype(LR)

    def run(n):
        for _ in range(n):
            net.backward(X, Y)
            if update:
                np.subtract(theta, lr * g, out=theta)

    return run


def bench_fit_per_step(dims, m, dtype):
    """One `net.fit(X, Y, epochs=1)` call per step: the one-call path with a native update."""
    out, loss = output_of(dims)
    net = dk.Network(dims, output=out, loss=loss, dtype=dtype).initialize("he", rng=0)
    X, Y = data(dims, m, dtype)

    def run(n):
        for _ in range(n):
            net.fit(X, Y, epochs=1, learning_rate=LR)

    return run


PEAK_N = 2048


def peak_gemm(dtype, n=PEAK_N, blas=None):
    """fn(k): k n x n x n GEMMs in NumPy's OpenBLAS (blas threads; None: all cores): 2 n^3 flops each. Run
    as one more alternative in a table's rounds, so each round's "% of peak" compares with the peak measured
    under the same load (the peak itself varied 53-111 GFLOP/s float64 between a loaded and a quiet hour)."""
    a = np.random.default_rng(0).standard_normal((n, n)).astype(dtype)
    b = a.copy()
    c = np.empty_like(a)

    def run(k):
        for _ in range(k):
            np.matmul(a, b, out=c)

    return blas_threads(run, blas)


def gemm_peak(dtype, n=PEAK_N, reps=5, blas=None):
    """GFLOP/s of one n x n x n GEMM in NumPy's OpenBLAS: median and best over `reps` paused rounds."""
    t = timings([peak_gemm(dtype, n, blas)], 1, reps, 0.3)[0]
    return 2.0 * n ** 3 / t.median / 1e9, 2.0 * n ** 3 / t.best / 1e9


def torch_peak(tw, dtype, threads, n=PEAK_N, reps=5):
    """The same GEMM in PyTorch (MKL), in its worker process: GFLOP/s median and best, what torch's own GEMM reaches."""
    t = timings([tw.make("gemm", dtype, threads, n)], 1, reps, 0.3)[0]
    return 2.0 * n ** 3 / t.median / 1e9, 2.0 * n ** 3 / t.best / 1e9


def pct_of_peak(t_step, t_peak, flops, n=PEAK_N):
    """dnnkit's GFLOP/s as % of the GEMM peak, per round (both timed in the same round): median (range)."""
    r = 100.0 * (flops / t_step.times) / (2.0 * n ** 3 / t_peak.times)
    return f"{np.median(r):.0f}% ({r.min():.0f}-{r.max():.0f})"


def ref_best(ts_ref):
    """The reference at its best BLAS thread count: (Timing, label) of the lower median."""
    k = int(np.argmin([t.median for t in ts_ref]))
    return ts_ref[k], ("2 thr", "1 thr")[k]


def _best(f, reps):
    """Best seconds of one call of f over `reps` rounds, after a warm-up call (dnnkit._timing)."""
    return measure(f, rounds=reps, number=1).best


def bench_masks(n=1024, m=1024, reps=20):
    res = {}
    g = np.random.default_rng(0)
    res["numpy default_rng().random() < p"] = _best(lambda: g.random((n, m)) < KEEP, reps)
    before = dk.get_num_threads()
    for th in (1, before):
        dk.set_num_threads(th)
        # the one mask function (draw_keep_mask) that the passes and the training loop use too
        res[f"dk.dropout_mask public, uint8 ({th} thr)"] = _best(lambda: _core.dropout_mask(n, m, KEEP, 1, 0, 1), reps)
    dk.set_num_threads(before)
    return {k: v / (n * m) * 1e9 for k, v in res.items()}  # ns per element


def bench_interleaved(dims, m, reps=3, iters=300):
    """dnnkit steps alternating with a 256x256 NumPy matmul, vs each alone (float64, no dropout)."""
    out, loss = output_of(dims)
    X, Y = data(dims, m, np.float64)
    net = dk.Network(dims, output=out, loss=loss).initialize("he", rng=0)
    tr = _core.Trainer64(list(dims), "relu", out, loss, 0.01, X, Y, "gd", LR, 0.9, 0.9, 0.999, 1e-8, 0.0, 0.0, [],
                         1, 0)
    A = np.random.default_rng(0).standard_normal((256, 256))

    def steps(k):
        for _ in range(k):
            tr.run(net.theta, 1)

    def mats(k):
        for _ in range(k):
            A @ A

    def both(k):
        for _ in range(k):
            tr.run(net.theta, 1)
            A @ A

    return tuple(best_times([steps, mats, both], iters, reps))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer repetitions, skip the large net")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--nets", default="small,medium,large", help="comma-separated subset of the step table's nets")
    ap.add_argument("--pause", type=float, default=PAUSE, help="seconds of sleep before each timed turn")
    args = ap.parse_args()
    globals()["PAUSE"] = args.pause
    reps = 2 if args.quick else args.reps
    threads = dk.get_num_threads()
    tw = None
    if not args.no_torch and importlib.util.find_spec("torch") is not None:
        tw = TorchWorker()  # PyTorch at its own defaults, in a process of its own (workloads.TorchWorker)
    have_torch = tw is not None
    torch_version = tw.version if tw else "not used"
    print("## Environment\n")
    print(f"- {platform.processor() or platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()},"
          f" numpy {np.__version__}, torch {torch_version}")
    if tw:
        print("- PyTorch runs in a process of its own that never imports dnnkit (bench/workloads.py TorchWorker), "
              f"with its own OpenMP defaults (there: {', '.join(f'{k}={v}' for k, v in tw.omp.items())}); in one "
              "process it would share dnnkit's libgomp.so.1 and dnnkit's settings (passive waiting), which made it "
              "2-4x slower (bench/bench_torch_env.py). Its timings include one pipe round trip per timed call "
              f"(tens of us per turn of >= 0.25 s). dnnkit here: OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, "
              f"GOMP_SPINCOUNT={os.environ.get('GOMP_SPINCOUNT')}")
    print(f"- dnnkit threads {threads}; dnnkit BLAS: {dk.blas_info()['corename']} "
          f"(threads per call {dk.blas_info()['threads']})")
    try:
        from threadpoolctl import threadpool_info

        for p in threadpool_info():
            print(f"- threadpoolctl: {p.get('internal_api')} {p.get('version')} {p.get('architecture')} "
                  f"threads={p.get('num_threads')} ({os.path.basename(p.get('filepath', ''))})")
    except ImportError:
        pass
    print(f"- OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE')} OPENBLAS_L2_SIZE={os.environ.get('OPENBLAS_L2_SIZE')}")
    print(f"- load before: {os.getloadavg()}")
    print()

    peaks = {dt: gemm_peak(dt) for dt in (np.float64, np.float32)}
    peaks1 = {dt: gemm_peak(dt, blas=1) for dt in (np.float64, np.float32)}
    tpeaks = {dt: torch_peak(tw, dt, threads) for dt in (np.float64, np.float32)} if have_torch else {}
    print(f"GEMM peak (NumPy's OpenBLAS, {PEAK_N}^3, median (best) of {max(reps, 5)} rounds, {PAUSE} s pause "
          "before each):")
    for dt in (np.float64, np.float32):
        tp = tpeaks.get(dt)
        print(f"- {np.dtype(dt).name}: {threads} threads {peaks[dt][0]:.1f} ({peaks[dt][1]:.1f}) GFLOP/s; 1 thread "
              f"{peaks1[dt][0]:.1f} ({peaks1[dt][1]:.1f})"
              + (f"; PyTorch (MKL) {threads} threads {tp[0]:.1f} ({tp[1]:.1f})" if tp else ""))
    print("\nThe tables' \"% of GEMM peak\" is per round: dnnkit's GFLOP/s over the peak GEMM's, timed as one more "
          "alternative in the same round (the same load), median (range) over the rounds.\n")
    nets = args.nets.split(",")
    configs = [c for c in (CONFIGS[:2] if args.quick else CONFIGS) if c[0] in nets]

    if any(c[0] == "small" for c in configs):
        print(f"## Steps per second, default call (median of {reps} interleaved rounds, range in brackets; higher is better)\n")
        auto = "the fused step" if _core.small_layers_auto() else "the BLAS path"
        print("\"dnnkit `fit` default\" is the call exactly as a user makes it: the automatic choice between the fused "
              f"small-net step (cpp/dnnkit/small_layers.hpp) and the BLAS passes, on this CPU **{auto}** "
              f"(SIMD {_core.simd_info()['active']}). \"BLAS path\" and \"fused step\" are the same call with the choice "
              "forced (`_core.set_small_layers(False / True)`).\n")
        print("| net | m | dtype | dropout | dnnkit `fit` default | dnnkit log_every=n | default, BLAS path | "
              "default, fused step | reference | torch | default vs reference | default vs torch | "
              "BLAS path vs reference | fused vs reference |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, dims, m in configs:
        if name != "small":
            continue
        for dtype in (np.float32, np.float64):
            for keep in (1.0, KEEP):
                fns = [bench_dnnkit(dims, m, dtype, keep), bench_dnnkit(dims, m, dtype, keep, once=True),
                       bench_reference(dims, m, dtype, keep), bench_dnnkit(dims, m, dtype, keep, fused=False),
                       bench_dnnkit(dims, m, dtype, keep, fused=True)]
                if have_torch:
                    fns.append(tw.make("step", dims, m, dtype, keep, threads))
                ts = timings(fns, 500, reps, 0.25)
                pt = ts[5] if have_torch else None
                print(f"| {name} {dims} | {m} | {np.dtype(dtype).name} | {'keep 0.8' if keep < 1 else 'none'} | "
                      f"{rate(ts[0])} | {rate(ts[1])} | {rate(ts[3])} | {rate(ts[4])} | {rate(ts[2])} | "
                      f"{rate(pt) if pt else '-'} | {ratio(ts[0], ts[2])} | {ratio(ts[0], pt) if pt else '-'} | "
                      f"{ratio(ts[3], ts[2])} | {ratio(ts[4], ts[2])} |", flush=True)
    print()

    if any(c[0] != "small" for c in configs):
        print(f"## Medium and large nets: steps per second, default call (median of {reps} interleaved rounds, "
              "range in brackets)\n")
        print("The reference runs with NumPy's OpenBLAS at 2 threads (its default) and at 1 thread (threadpoolctl); "
              "\"vs reference\" is against the faster of the two (named). Every turn starts after a "
              f"{PAUSE} s pause.\n")
        print("| net | m | dtype | dropout | dnnkit `fit` default | dnnkit log_every=n | reference 2 thr | "
              "reference 1 thr | torch | default vs reference | default vs torch | dnnkit % of GEMM peak |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, dims, m in configs:
        if name == "small":
            continue
        big = name == "large"
        for dtype in (np.float32, np.float64):
            for keep in (1.0, KEEP):
                n0, mt = (1, 0.5) if big else (20, 0.25)
                fns = [bench_dnnkit(dims, m, dtype, keep), bench_dnnkit(dims, m, dtype, keep, once=True),
                       bench_reference(dims, m, dtype, keep), bench_reference(dims, m, dtype, keep, blas=1),
                       peak_gemm(dtype)]
                if have_torch:
                    fns.append(tw.make("step", dims, m, dtype, keep, threads))
                ts = timings(fns, n0, reps, mt)
                pt = ts[5] if have_torch else None
                rb, rl = ref_best(ts[2:4])
                print(f"| {name} {dims} | {m} | {np.dtype(dtype).name} | {'keep 0.8' if keep < 1 else 'none'} | "
                      f"{rate(ts[0])} | {rate(ts[1])} | {rate(ts[2])} | {rate(ts[3])} | {rate(pt) if pt else '-'} | "
                      f"{ratio(ts[0], rb)} ({rl}) | {ratio(ts[0], pt) if pt else '-'} | "
                      f"{pct_of_peak(ts[0], ts[4], step_flops(dims, m))} |", flush=True)
    print()

    print(f"## Dev-set monitoring every epoch (full batch, no dropout; median of {reps} rounds)\n")
    print("dnnkit: `fit(..., validation=(X_dev, Y_dev))`, and with `early_stopping=EarlyStopping(patience=10**9, "
          "restore_best=True)` (never stops; copies the best parameters at each improvement). Reference: the "
          "course step, then the dev cost (forward pass) every epoch, and the copy at each improvement; for the medium "
          "net the faster of NumPy's BLAS at 2 and at 1 thread (named).\n")
    print("| net | m / m_dev | dtype | monitoring | dnnkit steps/s | reference | vs reference |")
    print("|---|---|---|---|---|---|---|")
    for name, dims, m in CONFIGS[:2]:
        md = m // 2
        for dtype in (np.float32, np.float64):
            for es in (False, True):
                n0 = 20 if name == "medium" else 500
                fns = [bench_dnnkit(dims, m, dtype, 1.0, validation=md, early_stopping=es),
                       bench_reference_monitored(dims, m, dtype, md, early_stopping=es)]
                if name != "small":  # the medium net's reference also at 1 BLAS thread (the faster one counts)
                    fns.append(blas_threads(bench_reference_monitored(dims, m, dtype, md, early_stopping=es), 1))
                ts = timings(fns, n0, reps, 0.25)
                rb, rl = ref_best(ts[1:]) if len(ts) > 2 else (ts[1], "")
                print(f"| {name} {dims} | {m} / {md} | {np.dtype(dtype).name} | "
                      f"{'validation + EarlyStopping' if es else 'validation'} | {rate(ts[0])} | {rate(rb)}"
                      f"{f' ({rl})' if rl else ''} | {ratio(ts[0], rb)} |", flush=True)
    print()

    mm, batch = 2048, 64
    print(f"## Mini-batches of {batch}, medium net, m = {mm} ({mm // batch} steps an epoch; epochs/s, median of {reps} "
          "rounds)\n")
    print("dnnkit: `fit(X, Y, epochs=n, learning_rate=0.01, batch_size=64)` (default arguments otherwise). Reference: "
          "a permutation per epoch, batches sliced from it. PyTorch: `torch.randperm` per epoch and indexing, no "
          "DataLoader.\n")
    print("| dtype | dnnkit epochs/s | reference 2 thr | reference 1 thr | torch | vs reference | vs torch | "
          "dnnkit % of GEMM peak |")
    print("|---|---|---|---|---|---|---|---|")
    dims = CONFIGS[1][1]
    for dtype in (np.float32, np.float64):
        fns = [bench_dnnkit(dims, mm, dtype, 1.0, batch_size=batch), bench_reference_minibatch(dims, mm, dtype, batch),
               blas_threads(bench_reference_minibatch(dims, mm, dtype, batch), 1), peak_gemm(dtype)]
        if have_torch:
            fns.append(tw.make("minibatch", dims, mm, dtype, batch, threads))
        ts = timings(fns, 2, reps, 0.25)
        pt = ts[4] if have_torch else None
        rb, rl = ref_best(ts[1:3])
        print(f"| {np.dtype(dtype).name} | {rate(ts[0])} | {rate(ts[1])} | {rate(ts[2])} | {rate(pt) if pt else '-'} | "
              f"{ratio(ts[0], rb)} ({rl}) | {ratio(ts[0], pt) if pt else '-'} | "
              f"{pct_of_peak(ts[0], ts[3], step_flops(dims, mm))} |", flush=True)
    print()

    print(f"## One Python call per step: `net.backward` in a user's loop (medium net, m = 256; median of {reps} rounds)\n")
    print("dnnkit: `net.backward(X, Y)` then `theta -= lr * net.grad_vector` (NumPy), as a course-style loop; "
          "`fit(epochs=1)` called once per step (the update native, but a trainer built per call); `fit` default "
          "(all steps in one call) for comparison. Reference (faster of 2 / 1 BLAS threads) and torch: their steps "
          "as above.\n")
    print("| dtype | net.backward loop steps/s | net.backward alone | fit(epochs=1) per step | fit default | "
          "reference 2 thr | reference 1 thr | torch | loop vs reference | loop vs torch |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    name, dims, m = CONFIGS[1]
    for dtype in (np.float32, np.float64):
        fns = [bench_backward_loop(dims, m, dtype), bench_backward_loop(dims, m, dtype, update=False),
               bench_fit_per_step(dims, m, dtype), bench_dnnkit(dims, m, dtype, 1.0),
               bench_reference(dims, m, dtype, 1.0), bench_reference(dims, m, dtype, 1.0, blas=1)]
        if have_torch:
            fns.append(tw.make("step", dims, m, dtype, 1.0, threads))
        ts = timings(fns, 20, reps, 0.25)
        pt = ts[6] if have_torch else None
        rb, rl = ref_best(ts[4:6])
        print(f"| {np.dtype(dtype).name} | {rate(ts[0])} | {rate(ts[1])} | {rate(ts[2])} | {rate(ts[3])} | "
              f"{rate(ts[4])} | {rate(ts[5])} | {rate(pt) if pt else '-'} | {ratio(ts[0], rb)} ({rl}) | "
              f"{ratio(ts[0], pt) if pt else '-'} |", flush=True)
    for dtype in (np.float32, np.float64):  # where the loop's time beyond the engine goes
        net = dk.Network(dims, output="softmax", loss="ce", dtype=dtype).initialize("he", rng=0)
        X, Y = data(dims, m, dtype)
        theta, g, lr = net.theta, net.grad_vector, dtype(LR)
        tc, tu = compare([lambda: net.check_data(X, Y), lambda: np.subtract(theta, lr * g, out=theta)], rounds=reps,
                         min_time=0.05, pause=PAUSE)
        print(f"\n{np.dtype(dtype).name}: per call, `net.backward`'s argument checks (`check_data`: dtype, shapes, "
              f"finite X, one-hot Y) {tc.median * 1e6:.0f} us (range {tc.best * 1e6:.0f}-{tc.worst * 1e6:.0f}); the "
              f"NumPy update `theta -= lr * g` {tu.median * 1e6:.0f} us ({tu.best * 1e6:.0f}-{tu.worst * 1e6:.0f}).",
              end="")
    print("\n")

    print("## Dropout mask generation, 1024 x 1024, keep 0.8 (ns per element; lower is better)\n")
    masks = bench_masks()
    base = masks["numpy default_rng().random() < p"]
    for k, v in masks.items():
        print(f"- {k}: {v:.2f} ns ({base / v:.1f}x NumPy)")
    print()

    print("## Interleaved with NumPy (float64, no dropout; a 256x256 matmul between dnnkit steps)\n")
    print("| net | dnnkit step alone | matmul alone | step + matmul interleaved | overhead vs sum |")
    print("|---|---|---|---|---|")
    for name, dims, m in CONFIGS[:2]:
        ts, tm, tb = bench_interleaved(dims, m)
        print(f"| {name} | {ts * 1e6:.1f} us | {tm * 1e6:.1f} us | {tb * 1e6:.1f} us | {tb / (ts + tm):.2f}x |")
    print(f"\nload after: {os.getloadavg()}")
    if tw:
        tw.close()


if __name__ == "__main__":
    sys.exit(main())
