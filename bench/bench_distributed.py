"""Scaling out: serial vs a 2-worker dask.distributed LocalCluster on this machine.

1. A full gradient check of [784, 1024, 1024, 10] (1.86 M parameters), relu/softmax, m examples:
   serial in one process (n_threads=1 and n_threads=2) vs ``executor=client`` on the cluster (2 worker
   processes x 1 thread; default 4 shards per worker thread). The sharded report is checked to equal the
   serial one bit for bit.
2. A 24-configuration sweep (l2 x keep_prob x optimizer x init) on moons: serial vs the cluster.
3. Scheduling overhead: the round trip of a no-op task, and per run wall - busiest worker's compute.

Alternatives are interleaved (serial, cluster, serial, ...) and each is repeated; medians and [min, max] are
reported with the 1-minute load average before each run (the machine is shared by 8 engineers).

    python bench/bench_distributed.py [--repeats 3] [--m 64] [--quick]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "python"))

import dnnkit as dk  # noqa: E402


def med(xs):
    return f"{statistics.median(xs):8.2f} s  [{min(xs):.2f}, {max(xs):.2f}]"


def load():
    return os.getloadavg()[0]


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--m", type=int, default=64)
    p.add_argument("--epochs", type=int, default=300)
    p.add_argument("--quick", action="store_true", help="a smaller net (for a smoke run)")
    a = p.parse_args(argv)
    from distributed import Client, LocalCluster
    import dask

    dims = [784, 128, 64, 10] if a.quick else [784, 1024, 1024, 10]
    print(f"bench_distributed: {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}; {os.cpu_count()} cores; "
          f"load {os.getloadavg()}; dask {dask.__version__}; BLAS {dk.blas_info()}")
    print(f"command: python bench/bench_distributed.py {' '.join(argv or sys.argv[1:])}")

    t0 = time.perf_counter()
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                           dashboard_address="127.0.0.1:0", scheduler_kwargs={"dashboard": False},
                           worker_dashboard_address="127.0.0.1:0")
    client = Client(cluster, timeout=120)
    client.wait_for_workers(2, timeout=120)
    t_start = time.perf_counter() - t0
    client.run(lambda: __import__("dnnkit"))  # imports on the workers, outside the timings
    print(f"LocalCluster(n_workers=2, threads_per_worker=1) started in {t_start:.2f} s")

    # ---- scheduling overhead: no-op round trips
    ex = client.get_executor(pure=False)
    rt = []
    for _ in range(50):
        t = time.perf_counter()
        ex.submit(int, 0).result(timeout=60)
        rt.append(time.perf_counter() - t)
    print(f"no-op task round trip (client -> scheduler -> worker -> client): median {statistics.median(rt) * 1e3:.2f}"
          f" ms [{min(rt) * 1e3:.2f}, {max(rt) * 1e3:.2f}] over 50")

    # ---- 1. full gradient check
    rng = np.random.default_rng(0)
    net = dk.Network(dims, hidden="relu", output="softmax")
    net.initialize("he", rng=0)
    X = rng.standard_normal((dims[0], a.m))
    Y = np.eye(dims[-1])[:, rng.integers(0, dims[-1], a.m)]
    n = net.n_params
    print(f"\n1. full gradient check of {dims} ({n:,} parameters), m={a.m}, relu/softmax, l2=0.1")
    print(f"   data per shard: theta {net.theta.nbytes / 1e6:.1f} MB + X,Y {(X.nbytes + Y.nbytes) / 1e6:.2f} MB, "
          "scattered once per worker; each task then carries its (start, stop) range")
    times = {"serial, n_threads=1": [], "serial, n_threads=2": [], "cluster, 2 workers x 1 thread": []}
    loads = {k: [] for k in times}
    over, summed, shards = [], [], None
    serial = None
    for r in range(a.repeats):
        for name in times:
            loads[name].append(load())
            t = time.perf_counter()
            if name.startswith("serial"):
                rep = dk.gradcheck(net, X, Y, l2=0.1, n_threads=int(name[-1]))
                serial = rep
            else:
                rep = dk.gradcheck(net, X, Y, l2=0.1, executor=client, progress=False, timeout=3600)
                busy = {}
                for s in rep.shard_stats:
                    busy[s["worker"]] = busy.get(s["worker"], 0.0) + s["seconds"]
                over.append(rep.sharding["wall_seconds"] - max(busy.values()))
                summed.append(sum(busy.values()))
                shards = rep.sharding["n_shards"]
                assert np.array_equal(rep.approx, serial.approx) and np.array_equal(rep.flags, serial.flags)
                assert rep.verdict == serial.verdict and str(rep) == str(serial)
            times[name].append(time.perf_counter() - t)
    for name, ts in times.items():
        print(f"   {name:<32} {med(ts)}   load {statistics.median(loads[name]):.1f}")
    print(f"   cluster: {shards} shards; overhead (wall - busiest worker's compute): {med(over)}")
    print(f"   cluster: compute summed over the shards {med(summed)} (vs serial n_threads=1 above: the per-shard setup"
          " and the two workers' contention for the machine's cores)")
    print(f"   speed-up cluster vs serial n_threads=1: {statistics.median(times['serial, n_threads=1']) / statistics.median(times['cluster, 2 workers x 1 thread']):.2f}x;"
          f" vs serial n_threads=2: {statistics.median(times['serial, n_threads=2']) / statistics.median(times['cluster, 2 workers x 1 thread']):.2f}x"
          f"   (sharded report == serial report, bit for bit: checked every run)")

    # ---- 2. sweep
    Xm, Ym = dk.datasets.moons(m=1000, seed=0)
    s = dk.data.split(Xm, Ym, fractions=(0.8, 0.2), seed=0)
    grid = {"l2": [0.0, 0.1, 0.7], "keep_prob": [1.0, 0.86], "optimizer": ["gd", "adam"], "init": ["he", "glorot"]}
    kw = dict(layers=(20, 3), epochs=a.epochs, learning_rate=0.05, seed=0)
    print(f"\n2. sweep of 24 configurations {grid}, [2,20,3,1] on moons m={s.X_train.shape[1]}, {a.epochs} epochs each")
    st = {"serial, n_threads=1": [], "cluster, 2 workers x 1 thread": []}
    sl = {k: [] for k in st}
    sover = []
    ref = None
    for r in range(a.repeats):
        for name in st:
            sl[name].append(load())
            t = time.perf_counter()
            if name.startswith("serial"):
                res = dk.sweep(grid, s.X_train, s.Y_train, validation=(s.X_dev, s.Y_dev), n_threads=1, **kw)
                ref = res.to_dict(volatile=False)
            else:
                res = dk.sweep(grid, s.X_train, s.Y_train, validation=(s.X_dev, s.Y_dev), executor=client,
                               progress=False, timeout=3600, **kw)
                busy = {}
                for row in res:
                    busy[row["worker"]] = busy.get(row["worker"], 0.0) + row["seconds"]
                sover.append(res.seconds - max(busy.values()))
                assert res.to_dict(volatile=False) == ref
            st[name].append(time.perf_counter() - t)
    for name, ts in st.items():
        print(f"   {name:<32} {med(ts)}   load {statistics.median(sl[name]):.1f}")
    print(f"   cluster overhead (wall - busiest worker's compute): {med(sover)}")
    print(f"   speed-up cluster vs serial: {statistics.median(st['serial, n_threads=1']) / statistics.median(st['cluster, 2 workers x 1 thread']):.2f}x"
          "   (cluster table == serial table: checked every run)")
    client.close()
    cluster.close()
    print(f"\nload at the end {os.getloadavg()}")


if __name__ == "__main__":
    main()
