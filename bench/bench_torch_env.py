"""dnnkit against PyTorch each with its OWN OpenMP defaults (issue 11, session 4).

dnnkit and PyTorch share one OpenMP runtime in a process (both load a libgomp.so.1; the first one loaded serves
both, started with the environment of that moment). bench_train.py ran PyTorch in its own process after
`import dnnkit` until session 4 (since session 5 it uses workloads.TorchWorker), so PyTorch ran with dnnkit's settings: OMP_WAIT_POLICY=PASSIVE (and, since session 4,
GOMP_SPINCOUNT=3000). This benchmark runs every alternative in a fresh process instead, interleaved over the
rounds: dnnkit as a user runs it (`import dnnkit`: its defaults), PyTorch as a user runs it (no dnnkit, no
OpenMP variable set), and PyTorch under the two settings dnnkit's import gave it (for reading the older
bench_train figures). The step: full batch, forward + backward + SGD update, 2 threads, as in bench_train.py.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH=python python bench/bench_torch_env.py --rounds 5
"""
import argparse
import os
import subprocess
import sys
import time

import numpy as np

NETS = {"small": ([2, 20, 3, 1], 300, 2000), "medium": ([784, 128, 64, 10], 256, 300)}

DNNKIT = r"""
import sys, numpy as np
sys.path.insert(0, BENCH)
import dnnkit as dk, bench_train as B
out = {}
for name, (dims, m, n) in NETS.items():
    for dt in (np.float32, np.float64):
        small = dims[-1] == 1
        net = dk.Network(dims, output="sigmoid" if small else "softmax", loss="bce" if small else "ce",
                         dtype=dt).initialize("he", rng=0)
        X, Y = B.data(dims, m, dt)
        out[f"{name} {np.dtype(dt).name}"] = B.fit_seconds(net, X, Y, n)
print(repr(out))
"""

TORCH = r"""
import sys, time, numpy as np
sys.path.insert(0, BENCH)
from workloads import bench_torch  # bench_train.py's PyTorch step, without importing dnnkit
out = {}
for name, (dims, m, n) in NETS.items():
    for dt in (np.float32, np.float64):
        run = bench_torch(dims, m, dt, 1.0, 2)
        run(5)
        k = max(20, n // 10)
        best = np.inf
        for _ in range(3):
            t = time.perf_counter()
            run(k)
            best = min(best, (time.perf_counter() - t) / k)
        out[f"{name} {np.dtype(dt).name}"] = best
print(repr(out))
"""

SETTINGS = [("dnnkit (its defaults)", DNNKIT, None), ("torch (its defaults)", TORCH, {}),
            ("torch, OMP_WAIT_POLICY=PASSIVE", TORCH, {"OMP_WAIT_POLICY": "PASSIVE"}),
            ("torch, PASSIVE + GOMP_SPINCOUNT=3000", TORCH, {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "3000"})]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    print(f"# bench_torch_env.py, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load {os.getloadavg()}\n")
    res = {name: [] for name, _, _ in SETTINGS}
    for _ in range(args.rounds):
        for name, code, extra in SETTINGS:
            env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
            if extra is not None:
                env.update(extra)
            head = f"NETS = {NETS!r}\nBENCH = {os.path.dirname(os.path.abspath(__file__))!r}\n"
            out = subprocess.run([sys.executable, "-c", head + code], env=env, capture_output=True,
                                 text=True, timeout=900)
            if out.returncode != 0:
                sys.exit(out.stderr)
            time.sleep(0.2)
            res[name].append(eval(out.stdout.strip().splitlines()[-1]))
    keys = list(res[SETTINGS[0][0]][0])
    print(f"Steps per second, medians [ranges] over {args.rounds} rounds (each alternative a fresh process, "
          "2 threads); \"dnnkit vs\" = dnnkit's steps/s over this setting's, per round.\n")
    print("| setting | " + " | ".join(keys) + " |")
    print("|---|" + "---|" * len(keys))
    d = res[SETTINGS[0][0]]
    for name, rows in res.items():
        cells = []
        for k in keys:
            v = 1.0 / np.array([r[k] for r in rows])
            cell = f"{np.median(v):,.0f} [{v.min():,.0f}-{v.max():,.0f}]"
            if rows is not d:
                q = np.array([r[k] for r in rows]) / np.array([x[k] for x in d])
                cell += f"; dnnkit {np.median(q):.2f}x [{q.min():.2f}-{q.max():.2f}]"
            cells.append(cell)
        print(f"| {name} | " + " | ".join(cells) + " |")
    print(f"\nload after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
