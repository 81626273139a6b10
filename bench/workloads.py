"""The benchmarks' workloads that need no dnnkit: the data and the PyTorch step. bench_train.py uses them, and so does
bench_torch_env.py's PyTorch process, which must not import dnnkit (dnnkit's import sets up the one OpenMP runtime a
process has, and PyTorch would then run with dnnkit's settings)."""
import ast
import os

import numpy as np

LR = 0.01


def data(dims, m, dtype, seed=0):
    g = np.random.default_rng(seed)
    X = g.standard_normal((dims[0], m)).astype(dtype)
    if dims[-1] == 1:
        Y = (g.random((1, m)) < 0.5).astype(dtype)
    else:
        Y = np.eye(dims[-1], dtype=dtype)[:, g.integers(0, dims[-1], m)]
    return X, Y


def torch_mlp(dims, dtype, keep, threads):
    """The PyTorch counterpart of a dnnkit net: Linear + ReLU (+ Dropout(1 - keep) when keep < 1) per hidden layer,
    a Linear output (the loss applies the output activation), in dtype, torch.set_num_threads(threads)."""
    import torch

    torch.set_num_threads(threads)
    layers = []
    for l in range(1, len(dims)):
        layers.append(torch.nn.Linear(dims[l - 1], dims[l]))
        if l < len(dims) - 1:
            layers.append(torch.nn.ReLU())
            if keep < 1:
                layers.append(torch.nn.Dropout(1 - keep))
    return torch.nn.Sequential(*layers).to(torch.float64 if dtype == np.float64 else torch.float32)


def bench_torch(dims, m, dtype, keep, threads):
    import torch

    model = torch_mlp(dims, dtype, keep, threads)
    X, Y = data(dims, m, dtype)
    xt = torch.from_numpy(np.ascontiguousarray(X.T))
    if dims[-1] == 1:
        yt = torch.from_numpy(np.ascontiguousarray(Y.T))
        lossfn = torch.nn.BCEWithLogitsLoss()
    else:
        yt = torch.from_numpy(np.argmax(Y, axis=0))
        lossfn = torch.nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=LR)

    def run(n):
        for _ in range(n):
            opt.zero_grad(set_to_none=True)
            lossfn(model(xt), yt).backward()
            opt.step()

    return run


def bench_torch_minibatch(dims, m, dtype, batch, threads):
    """PyTorch without a DataLoader: randperm each epoch, index the batch, step (fn(n): n epochs)."""
    import torch

    model = torch_mlp(dims, dtype, 1.0, threads)
    X, Y = data(dims, m, dtype)
    xt = torch.from_numpy(np.ascontiguousarray(X.T))
    yt = torch.from_numpy(np.argmax(Y, axis=0))
    lossfn = torch.nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    gen = torch.Generator().manual_seed(0)

    def run(n):
        for _ in range(n):
            perm = torch.randperm(m, generator=gen)
            for j in range(0, m, batch):
                idx = perm[j:j + batch]
                opt.zero_grad(set_to_none=True)
                lossfn(model(xt[idx]), yt[idx]).backward()
                opt.step()

    return run


def torch_gemm(dtype, threads, n):
    """fn(k): k n x n x n GEMMs in PyTorch (its MKL / oneDNN), torch.set_num_threads(threads)."""
    import torch

    torch.set_num_threads(threads)
    a = torch.from_numpy(np.random.default_rng(0).standard_normal((n, n)).astype(dtype))
    c = torch.empty_like(a)

    def run(k):
        for _ in range(k):
            torch.mm(a, a, out=c)

    return run


MAKERS = {"step": bench_torch, "minibatch": bench_torch_minibatch, "gemm": torch_gemm}
OMP_VARS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")  # what dnnkit's import sets in os.environ


class TorchWorker:
    """PyTorch as a PyTorch user runs it: in a process of its own that never imports dnnkit, started without the
    OpenMP variables dnnkit's import put in this process's environment (`extra`: settings to give it instead).

    In one process dnnkit and PyTorch share one libgomp.so.1, started with dnnkit's settings (passive waiting),
    which made PyTorch 2-4x slower on the benchmark's nets (bench_torch_env.py). Here each workload is built in
    the worker, and ``fn(n)`` sends "run n steps" and waits for "done": the caller's clock includes one pipe round
    trip per call (tens of microseconds against the benchmark's 0.25 s turns), and the caller sleeps in read()
    meanwhile (no spinning thread of its own)."""

    def __init__(self, extra=None):
        import subprocess
        import sys

        env = {k: v for k, v in os.environ.items() if k not in OMP_VARS}
        env.update(extra or {})
        self.proc = subprocess.Popen([sys.executable, "-u", os.path.abspath(__file__)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env)
        self.version, self.omp = self._call(("hello",))
        self._n = 0

    def _call(self, msg):
        self.proc.stdin.write(repr(msg) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the PyTorch worker died (exit code {self.proc.wait()})")
        kind, value = ast.literal_eval(line)
        if kind == "error":
            raise RuntimeError(f"in the PyTorch worker:\n{value}")
        return value

    def make(self, kind, *args):
        """fn(n) running MAKERS[kind](*args) in the worker (dtype as a NumPy type or its name)."""
        self._n += 1
        key = self._n
        args = tuple(np.dtype(a).name if isinstance(a, type) and issubclass(a, np.generic) else a for a in args)
        self._call(("make", key, kind, args))
        return lambda n: self._call(("run", key, n))

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=60)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _serve():
    """The worker's loop: one request per line of stdin, one answer per line of stdout."""
    import sys
    import traceback

    fns = {}
    for line in sys.stdin:
        try:
            msg = ast.literal_eval(line)
            if msg[0] == "hello":
                import torch

                value = (torch.__version__, {k: os.environ.get(k) for k in OMP_VARS})
            elif msg[0] == "make":
                _, key, kind, args = msg
                args = tuple(np.dtype(a).type if isinstance(a, str) and a.startswith("float") else a for a in args)
                fns[key] = MAKERS[kind](*args)
                value = None
            else:
                _, key, n = msg
                fns[key](n)
                value = None
            out = ("ok", value)
        except Exception:
            out = ("error", traceback.format_exc())
        sys.stdout.write(repr(out) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    _serve()
