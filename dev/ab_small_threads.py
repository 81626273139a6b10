#!/usr/bin/env python
"""The small net's two-part step with 1 thread (both parts on the training thread) against 2 threads (a helper
thread takes part 1), in one process, interleaved over rounds: [2, 20, 3, 1], sigmoid + bce, the default call
(a history row per epoch) and log_every=n. --busy starts a child process spinning on the CPU meanwhile (the
other core busy with another program), to see what the helper costs then.

    PYTHONPATH=python python dev/ab_small_threads.py --rounds 11 [--m 300] [--busy]
"""
import argparse
import subprocess
import sys
import time

import numpy as np

import dnnkit as dk


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=11)
    ap.add_argument("--m", type=int, default=300)
    ap.add_argument("--epochs", type=int, default=3000)
    ap.add_argument("--busy", action="store_true")
    a = ap.parse_args()
    busy = subprocess.Popen([sys.executable, "-c", "import time\nt = time.time()\nwhile time.time() - t < 600: pass"]) \
        if a.busy else None
    try:
        for dt in (np.float64, np.float32):
            res = {}
            net = dk.Network([2, 20, 3, 1], output="sigmoid", loss="bce", dtype=dt).initialize("he", rng=0)
            g = np.random.default_rng(0)
            X = g.standard_normal((2, a.m)).astype(dt)
            Y = (g.random((1, a.m)) < 0.5).astype(dt)
            th, n, before = net.theta.copy(), a.epochs, dk.get_num_threads()
            for _ in range(a.rounds):
                for le in (1, n):
                    for k in (1, 2):
                        dk.set_num_threads(k)
                        net.theta = th
                        t = time.perf_counter()
                        net.fit(X, Y, epochs=n, learning_rate=0.01, seed=1, log_every=le)
                        res.setdefault((k, le), []).append((time.perf_counter() - t) / n * 1e6)
            dk.set_num_threads(before)
            for le in (1, n):
                x, y = np.array(res[(1, le)]), np.array(res[(2, le)])
                q = x / y
                print(f"{np.dtype(dt).name} m={a.m} {'default call' if le == 1 else 'log_every=n '}"
                      f"{' (other core busy)' if a.busy else ''}: 1 thread {np.median(x):.2f} us/epoch "
                      f"[{x.min():.2f}-{x.max():.2f}], 2 threads {np.median(y):.2f} [{y.min():.2f}-{y.max():.2f}]; "
                      f"1-thread time / 2-thread time per round: median {np.median(q):.2f} [{q.min():.2f}-{q.max():.2f}]")
    finally:
        if busy:
            busy.kill()
            busy.wait()


if __name__ == "__main__":
    main()
