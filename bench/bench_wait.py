"""OpenMP wait setting A/B (issue 11, session 4): dnnkit's default on import (OMP_WAIT_POLICY=PASSIVE plus
GOMP_SPINCOUNT=3000: workers spin ~3000 pause loops, then sleep) against purely passive workers (the default
before: every barrier and fork/join sleeps and is woken) and a longer spin, each setting in its own fresh
process (libgomp reads them when it loads), interleaved over the rounds.

Per process: medium net [784, 128, 64, 10], m = 256, `fit` default call (ms per step, best of 3), float32 and
float64; and the "interleaved with NumPy" case of bench_train.py (one-step Trainer.run alternating with a
256 x 256 NumPy matmul, float64): the time of one step + one matmul, which a spinning worker can lengthen
by taking a core from NumPy's two BLAS threads.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH=python python bench/bench_wait.py --rounds 5
"""
import argparse
import os
import subprocess
import sys
import time

import numpy as np

SETTINGS = {"passive (before)": {"OMP_WAIT_POLICY": "PASSIVE"}, "default: spin 3000": {},
            "spin 10000": {"GOMP_SPINCOUNT": "10000"}}

CHILD = r"""
import sys, time, numpy as np
sys.path.insert(0, {bench!r})
import dnnkit as dk, bench_train as B
out = {{}}
for dt, n in ((np.float32, 600), (np.float64, 300)):
    net = dk.Network([784, 128, 64, 10], output="softmax", loss="ce", dtype=dt).initialize("he", rng=0)
    X, Y = B.data([784, 128, 64, 10], 256, dt)
    out[np.dtype(dt).name] = B.fit_seconds(net, X, Y, n)
step, mat, both = B.bench_interleaved([784, 128, 64, 10], 256, reps=3, iters=200)
out["both"] = both
out["sum"] = step + mat
print(repr(out))
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    here = os.path.dirname(os.path.abspath(__file__))
    code = CHILD.format(bench=here)
    res = {k: [] for k in SETTINGS}
    print(f"# bench_wait.py, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load {os.getloadavg()}\n")
    for _ in range(args.rounds):
        for name, extra in SETTINGS.items():
            env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
            env.update(extra)
            out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
            if out.returncode != 0:
                sys.exit(out.stderr)
            res[name].append(eval(out.stdout.strip().splitlines()[-1]))
    base = res["passive (before)"]
    print(f"Medians [ranges] of {args.rounds} rounds; speed-up = passive's time / this setting's, per round.\n")
    print("| setting | medium fit float32 ms/step | speed-up | medium fit float64 ms/step | speed-up | "
          "step + matmul interleaved, us | vs passive | interleaved vs sum of the two alone |")
    print("|---|---|---|---|---|---|---|---|")
    for name, rows in res.items():
        cells = []
        for key in ("float32", "float64"):
            v = np.array([r[key] for r in rows]) * 1e3
            s = np.array([b[key] for b in base]) * 1e3 / v
            cells += [f"{np.median(v):.3f} [{v.min():.3f}-{v.max():.3f}]", f"{np.median(s):.2f}x [{s.min():.2f}-{s.max():.2f}]"]
        both = np.array([r["both"] for r in rows]) * 1e6
        rel = both / (np.array([b["both"] for b in base]) * 1e6)
        ov = np.array([r["both"] / r["sum"] for r in rows])
        cells += [f"{np.median(both):.0f} [{both.min():.0f}-{both.max():.0f}]",
                  f"{np.median(rel):.2f}x [{rel.min():.2f}-{rel.max():.2f}]",
                  f"{np.median(ov):.2f}x [{ov.min():.2f}-{ov.max():.2f}]"]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print(f"\nload after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
