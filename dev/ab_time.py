#!/usr/bin/env python
"""A/B timing of two builds of dnnkit on the same machine, in alternating subprocesses (the machine is shared:
interleaving rounds cancels slow drifts in the load). Uses only public API present before and after issue 8.

    python dev/ab_time.py /tmp/before/python python --rounds 5
prints, per workload, the best and median seconds of each tree over the rounds and the ratio B/A of the medians.
"""
import json
import statistics
import subprocess
import sys

CHILD = r"""
import json, time, numpy as np, dnnkit as dk
def best(f, n):
    ts = []
    for _ in range(n):
        t = time.perf_counter(); f(); ts.append(time.perf_counter() - t)
    return min(ts)
g = np.random.default_rng(0)
out = {}
for name, dims, m, n in (("small fwd+bwd", [2, 20, 3, 1], 300, 400), ("medium fwd+bwd", [784, 128, 64, 10], 256, 20),
                         ("large fwd+bwd f32", [784, 1024, 1024, 10], 1024, 2)):
    for dt in ("float64",) if "f32" not in name else ("float32",):
        net = dk.Network(dims, output="softmax").initialize("he", rng=0) if dt == "float64" else \
            dk.Network(dims, output="softmax", dtype=dt).initialize("he", rng=0)
        X = g.standard_normal((dims[0], m)).astype(dt); Y = np.eye(dims[-1])[:, g.integers(0, dims[-1], m)].astype(dt)
        net.backward(X, Y, keep_prob=0.8, seed=1)
        out[name] = best(lambda: net.backward(X, Y, keep_prob=0.8, seed=1), n)
net = dk.Network([784, 128, 64, 10], output="softmax").initialize("he", rng=0)
X = g.standard_normal((784, 256)); Y = np.eye(10)[:, g.integers(0, 10, 256)]
out["gradcheck full relu [784,128,64,10] m=256"] = best(lambda: dk.gradcheck(net, X, Y), 2)
net = dk.Network([30, 40, 20, 3], hidden="tanh", output="softmax").initialize("glorot", rng=0)
X = g.standard_normal((30, 64)); Y = np.eye(3)[:, g.integers(0, 3, 64)]
out["gradcheck full tanh [30,40,20,3] m=64"] = best(lambda: dk.gradcheck(net, X, Y), 3)
net = dk.Network([20, 64, 32, 1]).initialize("he", rng=0)
X = g.standard_normal((20, 2000)); Y = (g.random((1, 2000)) < 0.5) * 1.0
out["fit 20 epochs mini-batch adam dropout [20,64,32,1] m=2000"] = best(
    lambda: net.fit(X, Y, epochs=20, batch_size=64, optimizer="adam", keep_prob=0.8, seed=1, learning_rate=1e-3), 2)
print(json.dumps(out))
"""


def main():
    a, b = sys.argv[1], sys.argv[2]
    rounds = int(sys.argv[sys.argv.index("--rounds") + 1]) if "--rounds" in sys.argv else 5
    res = {a: [], b: []}
    for r in range(rounds):
        for tree in ((a, b) if r % 2 == 0 else (b, a)):
            p = subprocess.run([sys.executable, "-c", CHILD], env={"PYTHONPATH": tree, "PATH": "/usr/bin:/bin"},
                               capture_output=True, text=True, check=True)
            res[tree].append(json.loads(p.stdout))
    print(f"A = {a}\nB = {b}\n{rounds} alternating rounds; milliseconds (best of each round's repeats)")
    print(f"{'workload':58s} {'A best':>9s} {'A median':>9s} {'B best':>9s} {'B median':>9s} {'B/A med':>8s}")
    for k in res[a][0]:
        ta = [x[k] for x in res[a]]
        tb = [x[k] for x in res[b]]
        ma, mb = statistics.median(ta), statistics.median(tb)
        print(f"{k:58s} {min(ta) * 1e3:9.2f} {ma * 1e3:9.2f} {min(tb) * 1e3:9.2f} {mb * 1e3:9.2f} {mb / ma:8.2f}")


if __name__ == "__main__":
    main()
