"""``dnnkit`` command line: ``demo``, ``train``, ``gradcheck``, ``bench``, ``sweep``.

    dnnkit demo [--out DIR] [--quick]
    dnnkit train --data circles|moons|spirals|blobs|football|FILE.csv|FILE.npz [options]
    dnnkit gradcheck (--model PATH | --layers 4,5,3,1) [options]
    dnnkit bench [--quick]
    dnnkit sweep --data moons --l2 0,0.1,0.7 --keep-prob 1,0.86 [--scheduler tcp://HOST:PORT | --workers N]

Errors in the input (a missing file, a bad flag value) print one line ``dnnkit <command>: error: ...`` to
stderr and exit with status 2, without a traceback. ``main(argv)`` returns the exit status (0 on success).
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time

import numpy as np

from . import _validation as V
from ._timing import compare, measure

__all__ = ["main"]

BUILTIN_DATA = ("circles", "moons", "spirals", "blobs", "football")


class UsageError(Exception):
    """A bad command-line value: reported as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse's default prints the whole usage first)
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# ------------------------------------------------------------------------------------------------- parsing

def _int_list(text: str) -> list:
    try:
        vals = [int(v) for v in text.replace(" ", "").split(",") if v != ""]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 2,20,3,1, got {text!r}") from None
    if not vals or any(v < 1 for v in vals):
        raise argparse.ArgumentTypeError(f"layer sizes must be integers >= 1, got {text!r}")
    return vals


def _checked(convert, check):
    """An argparse type: the text converted (int or float), then checked by the _validation rule, whose
    message becomes argparse's ("argument --epochs: the value must be >= 1, got 0")."""
    def parse(text: str):
        try:
            v = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'an integer' if convert is int else 'a number'}, got {text!r}") from None
        try:
            return check(v)
        except (TypeError, ValueError) as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    return parse


_positive_int = _checked(int, lambda v: V.check_positive_int(v, "the value", minimum=1))
_nonneg_int = _checked(int, lambda v: V.check_positive_int(v, "the value", minimum=0))


def _real(lo=None, hi=None, lo_open=False, hi_open=False):
    return _checked(float, lambda v: V.check_real(v, "the value", lo, hi, lo_open, hi_open))


def _split_arg(text: str):
    if text == "auto":
        return "auto"
    try:
        vals = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'auto' or fractions like 0.6,0.2,0.2, got {text!r}") from None
    if len(vals) not in (2, 3) or any(v < 0 for v in vals) or abs(sum(vals) - 1) > 1e-6:
        raise argparse.ArgumentTypeError(f"expected 2 or 3 non-negative fractions summing to 1, got {text!r}")
    return vals


def _build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="dnnkit", description="dnnkit: practical deep learning for fully-connected nets "
                                           "(init, regularization, diagnostics, gradient checking).")
    p.add_argument("--version", action="store_true", help="print the version and exit")
    sub = p.add_subparsers(dest="command", metavar="{demo,train,gradcheck,bench,sweep}", parser_class=_Parser)

    d = sub.add_parser("demo", help="run the seeds' four experiments, print their tables, save figures")
    d.add_argument("--out", default="dnnkit-demo", help="directory for the figures (default ./dnnkit-demo)")
    d.add_argument("--quick", action="store_true", help="shorter training runs (seconds)")
    d.add_argument("--no-plots", action="store_true", help="print the tables only")

    t = sub.add_parser("train", help="split, standardize, train, diagnose, save")
    t.add_argument("--data", required=True,
                   help="circles|moons|spirals|blobs|football, or a .csv (rows = examples, label in the last "
                        "column) or .npz (arrays X (n_x, m) and Y) file")
    t.add_argument("--layers", type=_int_list,
                   help="layer sizes n_x,...,n_y (default n_x,20,3,n_y); the first and last must match the data")
    t.add_argument("--hidden", default="relu", choices=["relu", "leaky_relu", "tanh", "sigmoid", "linear"])
    t.add_argument("--init", default=None, help="initialization (default: he for relu, glorot otherwise)")
    t.add_argument("--epochs", type=_positive_int, default=2000)
    t.add_argument("--lr", type=_real(0, lo_open=True), default=0.1, help="learning rate")
    t.add_argument("--batch-size", type=_positive_int, default=None, help="mini-batch size (default: full batch)")
    t.add_argument("--optimizer", default="gd", choices=["gd", "momentum", "adam"])
    t.add_argument("--l2", type=_real(0), default=0.0, help="L2 regularization lambda")
    t.add_argument("--l1", type=_real(0), default=0.0, help="L1 regularization lambda")
    t.add_argument("--keep-prob", type=_real(0, 1, lo_open=True), default=1.0, help="dropout keep_prob")
    t.add_argument("--early-stopping", type=_nonneg_int, default=None, metavar="PATIENCE",
                   help="stop when the dev cost has not improved for PATIENCE reported epochs; restore the best")
    t.add_argument("--standardize", action="store_true", help="standardize inputs (statistics of train only)")
    t.add_argument("--split", type=_split_arg, default="auto", help="auto or train,dev[,test] fractions")
    t.add_argument("--bayes-error", type=_real(0, 1), default=0.0, help="Bayes error for the diagnosis")
    t.add_argument("--seed", type=_nonneg_int, default=0)
    t.add_argument("--out", default="dnnkit-train", help="directory for model.npz and figures")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("--no-plots", action="store_true", help="do not write figures")

    g = sub.add_parser("gradcheck", help="check net.backward with centered differences and print the report")
    src = g.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="a model saved by net.save / dnnkit train")
    src.add_argument("--layers", type=_int_list, help="a fresh net n_x,...,n_y (e.g. 4,5,3,1)")
    g.add_argument("--hidden", default="relu", choices=["relu", "leaky_relu", "tanh", "sigmoid", "linear"])
    g.add_argument("--output", default="sigmoid", choices=["sigmoid", "softmax", "linear"])
    g.add_argument("--data", default=None, help="check on this .csv/.npz data (with --model; default random)")
    g.add_argument("--m", type=_positive_int, default=16, help="examples of random data (default 16)")
    g.add_argument("--l2", type=_real(0), default=0.0)
    g.add_argument("--l1", type=_real(0), default=0.0)
    g.add_argument("--keep-prob", type=_real(0, 1, lo_open=True), default=1.0)
    g.add_argument("--seed", type=_nonneg_int, default=0, help="data, init and dropout masks")
    g.add_argument("--mode", default="full", choices=["full", "sample", "directional"])
    g.add_argument("--k", type=_positive_int, default=16, help="coordinates per component (sample mode)")
    g.add_argument("--eps", type=_real(0, lo_open=True), default=1e-7)
    g.add_argument("--grads", default=None, metavar="NPZ",
                   help="check YOUR gradients (arrays dW1, db1, ... in a .npz, from your backprop on this model and "
                        "data) instead of net.backward; the report names the mistake when it recognizes it")
    g.add_argument("--taylor", action="store_true",
                   help="also run the eps-free Taylor test (remainder convergence order per component)")
    g.add_argument("--plot", default=None, metavar="PNG", help="also save the per-component bars here")

    b = sub.add_parser("bench", help="short timing: native forward+backward and gradcheck vs dnnkit.reference")
    b.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
    _add_sweep_parser(sub)
    return p


# ------------------------------------------------------------------------------------------------- data

def _binary_or_classes(Y):
    """(Y for the net, output, loss, n_classes or None): 0/1 row -> sigmoid; integer ids -> one-hot softmax;
    one-hot -> softmax; anything else -> linear regression."""
    from .data import one_hot

    if Y.shape[0] > 1:
        if np.all((Y == 0) | (Y == 1)) and np.all(Y.sum(axis=0) == 1):
            return Y, "softmax", "ce", Y.shape[0]
        return Y, "linear", "mse", None
    y = Y[0]
    if np.all(np.isin(y, (0.0, 1.0))):
        return Y, "sigmoid", "bce", 2
    if np.all(y == np.round(y)) and y.min() >= 0 and len(np.unique(y)) <= max(20, int(0.05 * y.size)):
        return one_hot(y.astype(np.int64)), "softmax", "ce", int(y.max()) + 1
    return Y, "linear", "mse", None


def _load_data(spec: str, seed: int):
    """-> (X, Y, preset) where preset is (X_train, Y_train, X_rest, Y_rest) for football, else None."""
    from . import datasets

    if spec in BUILTIN_DATA:
        if spec == "football":
            X, Y, Xd, Yd = datasets.football(seed=seed)
            return X, Y, (X, Y, Xd, Yd)
        fn = getattr(datasets, spec)
        return (*fn(seed=seed), None) if spec in ("circles", "moons") else (*fn(seed=seed, one_hot=True), None)
    low = spec.lower()
    if not os.path.exists(spec):
        raise UsageError(f"--data {spec!r}: no such file (built-in sets: {', '.join(BUILTIN_DATA)})")
    if low.endswith(".csv"):
        X, Y = datasets.load_csv(spec)
    elif low.endswith(".npz"):
        X, Y = datasets.load_npz(spec)
        if Y is None:
            raise UsageError(f"{spec!r} has no labels (array 'Y')")
    else:
        raise UsageError(f"--data {spec!r}: expected a .csv or .npz file or one of {', '.join(BUILTIN_DATA)}")
    return X, Y, None


def _split(X, Y, preset, fractions, seed):
    from . import data

    if preset is not None:  # football: its own train set; its dev set halves into dev and test
        Xtr, Ytr, Xd, Yd = preset
        s = data.split(Xd, Yd, fractions=(0.5, 0.5), seed=seed)
        return Xtr, Ytr, s.X_train, s.Y_train, s.X_dev, s.Y_dev
    s = data.split(X, Y, fractions=fractions, seed=seed)
    return s.X_train, s.Y_train, s.X_dev, s.Y_dev, s.X_test, s.Y_test


# ------------------------------------------------------------------------------------------------- commands

def _cmd_demo(args, out) -> int:
    from . import experiments

    out_dir = None if args.no_plots else args.out
    if out_dir is not None and importlib.util.find_spec("matplotlib") is None:
        print("dnnkit demo: matplotlib is not installed, so the tables are printed without figures "
              "(pip install 'dnnkit[plot]' for the figures)", file=sys.stderr)
        out_dir = None
    if out_dir is not None:
        os.makedirs(out_dir, exist_ok=True)
    t0 = time.perf_counter()
    results = experiments.run_all(out_dir=out_dir, quick=args.quick, echo=lambda s: print(s, file=out))
    n_fig = sum(len(r.figures) for r in results.values())
    print(f"demo finished in {time.perf_counter() - t0:.1f} s" + (f"; {n_fig} figures in {out_dir}" if out_dir else ""),
          file=out)
    return 0


def _errors_line(name, ev):
    if "error" in ev:
        return f"{name:<6} cost {ev['cost']:.4f}  error {100 * ev['error']:6.2f} %  accuracy {100 * ev['accuracy']:6.2f} %"
    return f"{name:<6} cost {ev['cost']:.4f}  mse {ev['mse']:.4g}"


def _cmd_train(args, out) -> int:
    import dnnkit as dk
    from . import data, diagnose

    X, Y, preset = _load_data(args.data, args.seed)
    Y, output, loss, n_classes = _binary_or_classes(Y)
    Xtr, Ytr, Xd, Yd, Xte, Yte = _split(X, Y, preset, args.split, args.seed)
    n_x, n_y = X.shape[0], Y.shape[0]
    dims = args.layers or [n_x, 20, 3, n_y]
    if dims[0] != n_x or dims[-1] != n_y or len(dims) < 2:
        raise UsageError(f"--layers {','.join(map(str, dims))}: the data needs {n_x} inputs and {n_y} outputs "
                         f"(e.g. --layers {n_x},20,3,{n_y})")
    normalizer: data.Standardizer | None = None
    if args.standardize:
        normalizer = data.Standardizer().fit(Xtr)   # train statistics only
        Xtr_n, Xd_n = normalizer.transform(Xtr), normalizer.transform(Xd)
        Xte_n = None if Xte is None else normalizer.transform(Xte)
    else:
        Xtr_n, Xd_n, Xte_n = Xtr, Xd, Xte
    net = dk.Network(dims, hidden=args.hidden, output=output, loss=loss)
    net.initialize(args.init, rng=args.seed)
    net.normalizer = normalizer
    print(f"data {args.data}: {n_x} features, {n_classes or 'regression'}"
          f"{' classes' if n_classes else ''}; train {Xtr.shape[1]}, dev {Xd.shape[1]}, "
          f"test {0 if Xte is None else Xte.shape[1]}" + ("; standardized (train statistics)" if normalizer else ""),
          file=out)
    print(f"net {net!r}", file=out)
    es = None
    if args.early_stopping is not None:
        es = dk.EarlyStopping(monitor="dev_cost", patience=args.early_stopping, restore_best=True)
    log_every = max(1, args.epochs // 200)
    history = net.fit(Xtr_n, Ytr, epochs=args.epochs, learning_rate=args.lr, batch_size=args.batch_size,
                      optimizer=args.optimizer, l2=args.l2, l1=args.l1, keep_prob=args.keep_prob,
                      validation=(Xd_n, Yd), early_stopping=es, seed=args.seed, verbose=not args.no_progress,
                      log_every=log_every)
    print(f"trained {history.config.get('epochs_run', len(history))} epochs in {history.time[-1]:.2f} s"
          + (f"; stopped early, best epoch {history.best_epoch} restored" if history.stopped_early else "")
          + ("; interrupted" if history.interrupted else ""), file=out)
    ev = {"train": net.evaluate(Xtr_n, Ytr), "dev": net.evaluate(Xd_n, Yd)}
    if Xte is not None:
        ev["test"] = net.evaluate(Xte_n, Yte)
    for name, e in ev.items():
        print(_errors_line(name, e), file=out)
    if loss != "mse":
        diag = diagnose.bias_variance(ev["train"]["error"], ev["dev"]["error"], bayes_error=args.bayes_error)
        print(str(diag), file=out)
    os.makedirs(args.out, exist_ok=True)
    model_path = os.path.join(args.out, "model.npz")
    net.save(model_path)
    print(f"model saved to {model_path}", file=out)
    if not args.no_plots:
        figs = _train_figures(net, history, Xtr, Ytr, args.out)
        if figs:
            print("figures: " + ", ".join(figs), file=out)
    return 0


def _train_figures(net, history, Xtr, Ytr, out_dir) -> list:
    try:
        from . import plots

        figs = [plots.cost_curves(history, path=os.path.join(out_dir, "costs.png"), title="train / dev cost"),
                plots.gradient_norms(history, path=os.path.join(out_dir, "grad_norms.png"))]
        if Xtr.shape[0] == 2 and net.output != "linear":
            figs.append(plots.decision_boundary(net, Xtr, Ytr, path=os.path.join(out_dir, "boundary.png"),
                                                title="decision boundary (training data)"))
        return figs
    except ImportError as e:
        print(f"dnnkit train: no figures: {e}", file=sys.stderr)
        return []


def _random_data(dims, output, m, rng):
    X = rng.standard_normal((dims[0], m))
    n_y = dims[-1]
    if output == "sigmoid":
        Y = (rng.random((n_y, m)) < 0.5).astype(np.float64)
    elif output == "softmax":
        Y = np.eye(n_y)[:, rng.integers(0, n_y, size=m)]
    else:
        Y = rng.standard_normal((n_y, m))
    return X, Y


def _load_grads(path: str) -> dict:
    """{"dW1": ..., "db1": ...} from a .npz (no pickles)."""
    if not os.path.exists(path):
        raise UsageError(f"--grads {path!r}: no such file")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {key: np.array(z[key]) for key in z.files}
    except Exception as e:  # not an .npz, truncated, pickled objects
        raise UsageError(f"--grads {path!r}: could not read it as .npz ({e})") from None


def _cmd_gradcheck(args, out) -> int:
    import dnnkit as dk

    rng = np.random.default_rng(args.seed)
    if args.model:
        if not os.path.exists(args.model):
            raise UsageError(f"--model {args.model!r}: no such file")
        net = dk.Network.load(args.model)
        what = f"model {args.model}"
    else:
        if len(args.layers) < 2:
            raise UsageError("--layers needs at least the input and output sizes, e.g. 4,5,3,1")
        if args.output == "softmax" and args.layers[-1] < 2:
            raise UsageError("--output softmax needs at least 2 output units")
        net = dk.Network(args.layers, hidden=args.hidden, output=args.output)
        net.initialize(None, rng=args.seed)
        what = f"fresh net {args.layers} ({args.hidden} / {args.output}, default init, seed {args.seed})"
    if args.data:
        X, Y, _ = _load_data(args.data, args.seed)
        Y = _binary_or_classes(Y)[0]
        if getattr(net, "normalizer", None) is not None:
            X = net.normalizer.transform(X)
        src = f"data {args.data} ({X.shape[1]} examples)"
    else:
        X, Y = _random_data(list(net.layer_dims), net.output, args.m, rng)
        src = f"random data, m={args.m}"
    kw = dict(l2=args.l2, l1=args.l1, eps=args.eps, mode=args.mode, k=args.k, rng=args.seed)
    if args.keep_prob < 1:
        kw.update(keep_prob=args.keep_prob, seed=args.seed)
    print(f"checking net.backward of {what} on {src}"
          + (f", l2={args.l2:g}" if args.l2 else "") + (f", l1={args.l1:g}" if args.l1 else "")
          + (f", keep_prob={args.keep_prob:g} (masks seeded)" if args.keep_prob < 1 else ""), file=out)
    grads = None
    if args.grads:
        grads = _load_grads(args.grads)
        kw["grads"] = grads
        print(f"checking YOUR gradients from {args.grads} (not net.backward)", file=out)
    t0 = time.perf_counter()
    try:
        report = dk.gradcheck(net, X, Y, **kw)
    except (KeyError, ValueError) as e:
        if grads is None:
            raise
        raise UsageError(f"--grads {args.grads!r}: {e.args[0] if e.args else e}") from None
    dt = time.perf_counter() - t0
    print(str(report), file=out)
    if args.taylor:
        tkw = {key: kw[key] for key in ("l2", "l1", "keep_prob", "seed", "grads") if key in kw}
        print(str(dk.taylor_test(net, X, Y, **tkw)), file=out)
    print(f"({net.n_params} parameters, {report.n_checked} checked in {dt * 1e3:.1f} ms)", file=out)
    if not report.complete:  # Ctrl-C: the partial report is printed above; the exit status says interrupted
        print(f"dnnkit gradcheck: interrupted ({report.missing_indices.size} coordinates not checked)", file=sys.stderr)
        return 130
    if args.plot:
        from . import plots

        print(f"figure: {plots.gradcheck_report(report, path=args.plot)}", file=out)
    return 0 if report.verdict != "bug" else 1


def _best_time(fn, repeats):
    """Best seconds of one call over `repeats` rounds (no warm-up: the first round is one more sample)."""
    return measure(fn, rounds=repeats, number=1, warmup=False).best


def _cmd_bench(args, out) -> int:
    import dnnkit as dk
    from . import reference as ref

    rng = np.random.default_rng(0)
    repeats = 3 if args.quick else 7
    print(f"dnnkit bench{' --quick' if args.quick else ''}: best of {repeats}; {dk.get_num_threads()} threads; "
          "the full benchmarks live in bench/", file=out)
    sizes = [([784, 128, 64, 10], 256)] if args.quick else [([784, 128, 64, 10], 256), ([784, 256, 256, 10], 1024)]
    print(f"{'forward+backward':<30} {'m':>5} {'dnnkit':>10} {'reference':>10} {'speedup':>8}", file=out)
    for dims, m in sizes:
        X, Y = _random_data(dims, "softmax", m, rng)
        net = dk.Network(dims, hidden="relu", output="softmax")
        net.initialize("he", rng=0)
        params = net.get_params()
        t_nat, t_ref = (t.best for t in compare(  # interleaved rounds: both see the same load
            [lambda: net.backward(X, Y),
             lambda: ref.cost_and_gradients(X, Y, params, hidden="relu", output="softmax", loss="ce")],
            rounds=repeats, number=1, warmup=False))
        print(f"{str(dims):<30} {m:>5} {t_nat * 1e3:>8.2f}ms {t_ref * 1e3:>8.2f}ms {t_ref / t_nat:>7.1f}x", file=out)
    # gradient check: the native engine (every parameter) vs the reference loop (a subset, extrapolated)
    dims, m = ([20, 32, 16, 1], 64) if args.quick else ([64, 64, 32, 1], 128)
    X, Y = _random_data(dims, "sigmoid", m, rng)
    net = dk.Network(dims, hidden="relu", output="sigmoid")
    net.initialize("he", rng=0)
    n = net.n_params
    t_nat = _best_time(lambda: dk.gradcheck(net, X, Y), max(1, repeats // 2))
    net.backward(X, Y)
    theta = net.theta.copy()
    grad = net.grad_vector.copy()
    sub = min(n, 200 if args.quick else 500)

    def J(th):
        return ref.compute_cost(ref.forward_propagation(X, dk.vector_to_params(th, list(dims)))[0], Y)

    t_sub = _best_time(lambda: ref.gradient_check(J, theta, grad, indices=np.arange(sub)), 1)
    t_ref = t_sub * n / sub
    print(f"{'gradcheck, full':<30} {'':>5} {'dnnkit':>10} {'reference':>10} {'speedup':>8}", file=out)
    print(f"{str(dims) + f' ({n} params)':<30} {m:>5} {t_nat * 1e3:>8.2f}ms {t_ref * 1e3:>8.1f}ms {t_ref / t_nat:>7.1f}x"
          f"   (reference: {sub} coordinates timed, extrapolated)", file=out)
    return 0


# ------------------------------------------------------------------------------------------------- sweep

def _list_of(parse, what):
    def parse_list(text: str) -> list:
        items = [v for v in text.replace(" ", "").split(",") if v != ""]
        if not items:
            raise argparse.ArgumentTypeError(f"expected comma-separated {what}, got {text!r}")
        return [parse(v) for v in items]
    return parse_list


def _layer_lists(text: str) -> list:
    """"20-3,50-20-3" -> [(20, 3), (50, 20, 3)] (hidden layer sizes; '-' within one net, ',' between nets)."""
    out = []
    for part in [p for p in text.replace(" ", "").split(",") if p]:
        try:
            sizes = tuple(int(v) for v in part.split("-"))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected hidden sizes like 20-3,50-20-3, got {text!r}") from None
        if any(v < 1 for v in sizes):
            raise argparse.ArgumentTypeError(f"layer sizes must be >= 1, got {text!r}")
        out.append(sizes)
    if not out:
        raise argparse.ArgumentTypeError(f"expected hidden sizes like 20-3,50-20-3, got {text!r}")
    return out


def _add_sweep_parser(sub) -> None:
    s = sub.add_parser("sweep", help="train one net per configuration of a grid; table, best, plot (Dask-ready)")
    s.add_argument("--data", required=True, help="as for train: a built-in set or a .csv / .npz file")
    s.add_argument("--layers", type=_layer_lists, default=[(20, 3)],
                   help="hidden layer sizes to try, e.g. 20-3,50-20-3 (default 20-3)")
    s.add_argument("--hidden", type=_list_of(str, "activations"), default=["relu"])
    s.add_argument("--init", type=_list_of(str, "initializations"), default=None, help="e.g. he,glorot")
    s.add_argument("--l2", type=_list_of(_real(0), "numbers"), default=[0.0], help="e.g. 0,0.1,0.7")
    s.add_argument("--l1", type=_list_of(_real(0), "numbers"), default=[0.0])
    s.add_argument("--keep-prob", type=_list_of(_real(0, 1, lo_open=True), "numbers"), default=[1.0],
                   help="e.g. 1,0.86")
    s.add_argument("--lr", type=_list_of(_real(0, lo_open=True), "numbers"), default=[0.1], help="learning rates")
    s.add_argument("--optimizer", type=_list_of(str, "optimizers"), default=["gd"], help="e.g. gd,adam")
    s.add_argument("--epochs", type=_positive_int, default=1000)
    s.add_argument("--batch-size", type=_positive_int, default=None)
    s.add_argument("--standardize", action="store_true", help="standardize inputs (statistics of train only)")
    s.add_argument("--split", type=_split_arg, default="auto", help="auto or train,dev[,test] fractions")
    s.add_argument("--bayes-error", type=_real(0, 1), default=0.0)
    s.add_argument("--seed", type=_nonneg_int, default=0)
    where = s.add_mutually_exclusive_group()
    where.add_argument("--scheduler", default=None, metavar="tcp://HOST:PORT", help="run on this Dask scheduler")
    where.add_argument("--workers", type=_positive_int, default=None, metavar="N",
                       help="start a local Dask cluster of N worker processes on 127.0.0.1")
    s.add_argument("--threads", type=_positive_int, default=None, metavar="K",
                   help="native threads per configuration (default: the threads Dask gave each worker)")
    s.add_argument("--out", default=None, help="directory for sweep.json and sweep.png")
    s.add_argument("--no-progress", action="store_true")


def _cmd_sweep(args, out) -> int:
    import json

    import dnnkit as dk
    from . import data

    X, Y, preset = _load_data(args.data, args.seed)
    Y, output, loss, _ = _binary_or_classes(Y)
    Xtr, Ytr, Xd, Yd, _, _ = _split(X, Y, preset, args.split, args.seed)
    if args.standardize:
        norm = data.Standardizer().fit(Xtr)
        Xtr, Xd = norm.transform(Xtr), norm.transform(Xd)
    grid = {"layers": args.layers, "hidden": args.hidden, "l2": args.l2, "l1": args.l1, "keep_prob": args.keep_prob,
            "learning_rate": args.lr, "optimizer": args.optimizer}
    if args.init:
        grid["init"] = args.init
    grid = {k: v for k, v in grid.items() if len(v) > 1 or k in ("l2", "keep_prob")}  # the table shows what varies
    fixed = {"layers": args.layers[0], "hidden": args.hidden[0], "l1": args.l1[0], "learning_rate": args.lr[0],
             "optimizer": args.optimizer[0], "init": args.init[0] if args.init else None}
    fixed = {k: v for k, v in fixed.items() if k not in grid}
    cluster = client = None
    try:
        if args.scheduler or args.workers:
            try:
                from distributed import Client, LocalCluster
            except ImportError:
                raise UsageError("--scheduler / --workers need dask.distributed: pip install 'dask[distributed]'") \
                    from None
            if args.workers:
                cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                                       host="127.0.0.1", dashboard_address="127.0.0.1:0",
                                       scheduler_kwargs={"dashboard": False}, worker_dashboard_address="127.0.0.1:0")
                client = Client(cluster, timeout=60)
            else:
                client = Client(args.scheduler, timeout=30)
            print(f"dask: {len(client.nthreads())} workers at {client.scheduler.address}", file=out)
        res = dk.sweep(grid, Xtr, Ytr, validation=(Xd, Yd), output=output, loss=loss, epochs=args.epochs,
                       batch_size=args.batch_size, bayes_error=args.bayes_error, seed=args.seed, executor=client,
                       n_threads=args.threads, progress=False if args.no_progress else None, **fixed)
    finally:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
    print(str(res), file=out)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        path = os.path.join(args.out, "sweep.json")
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(res.to_dict(), f, indent=1)
        os.replace(tmp, path)
        print(f"table saved to {path}", file=out)
        if importlib.util.find_spec("matplotlib") is not None:
            print(f"figure: {res.plot(path=os.path.join(args.out, 'sweep.png')) and os.path.join(args.out, 'sweep.png')}",
                  file=out)
    return 0 if res.complete else 130


# ------------------------------------------------------------------------------------------------- main

def main(argv=None) -> int:
    """Entry point of the ``dnnkit`` script; returns the exit status (0 ok, 1 gradcheck found a bug, 2 usage)."""
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse: --help (0) or a usage error (2, message already printed)
        return int(e.code or 0)
    if args.version:
        import dnnkit

        print(f"dnnkit {dnnkit.__version__}")
        return 0
    if args.command is None:
        parser.print_help()
        return 2
    cmd = {"demo": _cmd_demo, "train": _cmd_train, "gradcheck": _cmd_gradcheck, "bench": _cmd_bench,
           "sweep": _cmd_sweep}[args.command]
    try:
        return cmd(args, sys.stdout)
    except KeyboardInterrupt:
        print(f"dnnkit {args.command}: interrupted", file=sys.stderr)
        return 130
    except (UsageError, ValueError, TypeError, KeyError, OSError, ImportError) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"dnnkit {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except Exception as e:  # a model-file error from dnnkit.io and the like: still one line
        if type(e).__name__.endswith("Error") and type(e).__module__.startswith("dnnkit"):
            print(f"dnnkit {args.command}: error: {e}", file=sys.stderr)
            return 2
        raise
