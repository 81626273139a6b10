"""The benchmarks' workloads that need no dnnkit: the data and the PyTorch step. bench_train.py uses them, and so does
bench_torch_env.py's PyTorch process, which must not import dnnkit (dnnkit's import sets up the one OpenMP runtime a
process has, and PyTorch would then run with dnnkit's settings)."""
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
