#!/usr/bin/env python
"""A/B of the small net's default `fit` between two trees (e.g. a copy of python/ made before a change, and
python/), in alternating subprocesses: [2, 20, 3, 1], m = 300 (--m), sigmoid + bce, 20,000 epochs, best of 3 per
process; "every" is the default call (a history row per epoch), "once" is log_every=n. Prints the medians
[ranges] of microseconds per epoch, the per-round ratio A/B, and whether the last train_cost has the same bits.

    python dev/ab_small_fit.py /tmp/old python --rounds 7
"""
import argparse
import subprocess
import sys

import numpy as np

CHILD = r"""
import sys, time, numpy as np
sys.path.insert(0, sys.argv[1])
import dnnkit as dk
dt = np.float32 if sys.argv[2] == "float32" else np.float64
once = sys.argv[3] == "once"
net = dk.Network([2, 20, 3, 1], output="sigmoid", loss="bce", dtype=dt).initialize("he", rng=0)
g = np.random.default_rng(0)
m = int(sys.argv[4])
X = g.standard_normal((2, m)).astype(dt); Y = (g.random((1, m)) < 0.5).astype(dt)
th = net.theta.copy(); n = 20000
net.fit(X, Y, epochs=100, learning_rate=0.01, seed=1)
v = []
for r in range(3):
    net.theta = th; t = time.perf_counter()
    h = net.fit(X, Y, epochs=n, learning_rate=0.01, seed=1, log_every=n if once else 1)
    v.append((time.perf_counter() - t) / n * 1e6)
print(min(v), h.train_cost[-1].hex())
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--m", type=int, default=300, help="examples (full batch)")
    args = ap.parse_args()
    for dt in ("float64", "float32"):
        for mode in ("every", "once"):
            res = {args.a: [], args.b: []}
            bits = {}
            for _ in range(args.rounds):
                for p in res:
                    out = subprocess.run([sys.executable, "-c", CHILD, p, dt, mode, str(args.m)], capture_output=True, text=True,
                                         timeout=600)
                    if out.returncode != 0:
                        sys.exit(out.stderr)
                    t, h = out.stdout.split()
                    res[p].append(float(t))
                    bits[p] = h
            a, b = np.array(res[args.a]), np.array(res[args.b])
            r = a / b
            print(f"{dt} {mode:5s}: A {np.median(a):.2f} us [{a.min():.2f}-{a.max():.2f}]  B {np.median(b):.2f} us "
                  f"[{b.min():.2f}-{b.max():.2f}]  A/B {np.median(r):.3f} [{r.min():.3f}-{r.max():.3f}]  "
                  f"same train_cost bits: {bits[args.a] == bits[args.b]}", flush=True)


if __name__ == "__main__":
    main()
