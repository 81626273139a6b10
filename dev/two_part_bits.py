#!/usr/bin/env python
"""What the fused step's two-part split (session 5, SMALL_SPLIT_MIN = 128) changes in the bits, old tree vs new:
the course's net trained 500 epochs (full batch, gd), float64 and float32, m on both sides of 128, 1 and 2 threads.
Prints, per case, whether old and new trained parameters are bit-identical, and the largest relative difference.

    python dev/two_part_bits.py /tmp/old python
"""
import subprocess
import sys

import numpy as np

CHILD = r"""
import sys, numpy as np
sys.path.insert(0, sys.argv[1])
import dnnkit as dk
out = {}
for dt in (np.float64, np.float32):
    for m in (100, 127, 128, 255, 256, 300, 1001, 4096):
        for n in (1, 2):
            dk.set_num_threads(n)
            net = dk.Network([2, 20, 3, 1], output="sigmoid", loss="bce", dtype=dt).initialize("he", rng=0)
            g = np.random.default_rng(0)
            X = g.standard_normal((2, m)).astype(dt); Y = (g.random((1, m)) < 0.5).astype(dt)
            net.fit(X, Y, epochs=500, learning_rate=0.05, seed=1)
            out[(np.dtype(dt).name, m, n)] = net.theta.astype(np.float64).tolist()
print(repr(out))
"""


def run(tree):
    r = subprocess.run([sys.executable, "-c", CHILD, tree], capture_output=True, text=True, check=True)
    return eval(r.stdout.strip().splitlines()[-1])


def main():
    a, b = run(sys.argv[1]), run(sys.argv[2])
    print("| dtype | m | threads | old == new (bits) | max relative difference |\n|---|---|---|---|---|")
    for k in a:
        x, y = np.array(a[k]), np.array(b[k])
        print(f"| {k[0]} | {k[1]} | {k[2]} | {np.array_equal(x, y)} | {np.max(np.abs(x - y)) / np.max(np.abs(x)):.1e} |")
    for k in b:
        assert b[k] == b[(k[0], k[1], 1)], f"new tree: thread count changed the bits at {k}"


if __name__ == "__main__":
    main()
