"""The notebooks in examples/ run in a real Jupyter kernel (nbclient + ipykernel) and their key outputs are
the course's published numbers (or, where its data cannot be regenerated, the behaviour it describes).

The kernel is the interpreter running this test (a kernelspec written to a temporary directory, so no
installed "python3" kernel of another environment is used), with the dnnkit under test importable.
Execute and save the notebooks with their outputs (what the repository shows):
    PYTHONPATH=python python tests/test_notebooks.py --write
"""
from __future__ import annotations

import gc
import json
import os
import re
import sys
import tempfile
import warnings
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")
pytest.importorskip("sklearn")

# jupyter_client leaves zmq sockets to the garbage collector (its ResourceWarnings are not dnnkit's); they are
# collected inside these tests (gc.collect below), so they cannot surface in another test
pytestmark = [pytest.mark.filterwarnings("ignore::ResourceWarning"),
              pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")]

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
KERNEL = "dnnkit-under-test"

# cell id -> regular expressions its outputs (text and HTML) must match: the course's numbers
EXPECTED = {
    "01_initialization.ipynb": {
        "data": [r"train \(2, 300\) \(1, 300\) test \(2, 100\) \(1, 100\)"],
        "train": [r"zeros .*train accuracy 0\.50000  test accuracy 0\.50000",
                  r"random x10 .*train accuracy 0\.83000  test accuracy 0\.86000",
                  r"he .*cost at iteration 0: 0\.88305374\d*  train accuracy 0\.99333  test accuracy 0\.96000"],
        "check": [r"course numbers reproduced"],
        "he-net": [r"Network", r"parameters, dtype float64, normalizer none"],
        "he-history": [r"15 epochs reported", r"data:image/png;base64,"],
        "costs": [r"he +1000: 0\.68798259\d*"],
        "boundary": [r"<image/png>"],
        "builtin": [r"zeros +train 0\.5000  test 0\.5000"],
    },
    "02_regularization.ipynb": {
        "data": [r"train \(2, 211\) dev \(2, 200\)", r"Bayes error ~ 0\.0\d\d"],
        "train": [r"none +train accuracy 0\.9\d+ +dev accuracy", r"L2 \(lambda=0\.7\)", r"dropout"],
        "check": [r"the course's story holds on this data"],
        "diagnose-none": [r"^high variance$", r"Bias / variance", r"variance \(dev - train\)"],
        "boundary": [r"<image/png>"],
        "diagnose-l2": [r"Bias / variance"],
        "history": [r"100 epochs reported", r"data:image/png;base64,"],
    },
    "03_gradient_checking.ipynb": {
        "oned": [r"^2\.919335883291695e-10 correct"],
        "ndim-generic": [r"^0\.2850931567761623 bug", r"Gradient check", r">bug</b>"],
        "ndim-flagged": [r"b1: difference 0\.600, gradient scaled by a constant: x4",
                         r"W2: difference 0\.333, gradient scaled by a constant: x2"],
        "ndim-net": [r"buggy: 0\.285093\d* bug   fixed: \d\.\d+e-1\d correct"],
        "taylor": [r"^bug ", r"Taylor test"],
    },
    "04_check_your_own_backprop.ipynb": {
        "correct": [r"^\d\.\d+e-1\d correct"],
        "mistakes": [r"forgot 1/m in db1 +bug +blamed: b1$", r"b1: gradient scaled by a constant: x m",
                     r"forgot L2 in dW2 +bug +blamed: W2$",
                     r"W2: dW2 equals a backprop that has no L2 term in dW2; fix: add \(lambd/m\) \* W2 to dW2",
                     r"named: l2_missing in layer 2$",
                     r"dW1 sign flipped +bug +blamed: W1$", r"W1: sign flipped",
                     r"tanh derivative from Z1 +bug +blamed: W1, b1$", r"named: deriv_formula_on_Z in layer 1$"],
        "mistakes-check": [r"every planted mistake is found in the right block; two are named with their fix"],
        "html": [r">bug</b>", r"no L2 term in dW2"],
        "own-fn": [r"^bug \{'b1': 'gradient scaled by a constant: x50 \(e\.g\. 50/m instead of 1/m\)"],
    },
}


def _write_kernelspec(root: Path) -> Path:
    """A kernelspec for this very interpreter, with the dnnkit under test on its path."""
    import dnnkit

    src = os.path.dirname(os.path.dirname(os.path.abspath(dnnkit.__file__)))
    kdir = root / "kernels" / KERNEL
    kdir.mkdir(parents=True)
    env = {"PYTHONPATH": os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p),
           "PYDEVD_DISABLE_FILE_VALIDATION": "1"}
    (kdir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-Xfrozen_modules=off", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "dnnkit under test", "language": "python", "env": env}))
    return root


def execute(path: Path, workdir: str, kernel_root: Path):
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    nb = nbformat.read(path, as_version=4)
    ksm = KernelSpecManager(kernel_dirs=[str(kernel_root / "kernels")])
    km = KernelManager(kernel_name=KERNEL, kernel_spec_manager=ksm)
    client = nbclient.NotebookClient(nb, km=km, timeout=300, startup_timeout=120, kernel_name=KERNEL,
                                     resources={"metadata": {"path": workdir}})
    try:
        client.execute()
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            del client, km
            gc.collect()
    return nb


def _outputs_text(cell) -> str:
    parts = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":  # a stream may arrive in several chunks: join them as printed
            if parts and parts[-1].startswith("\x00stream"):
                parts[-1] += out.get("text", "")
            else:
                parts.append("\x00stream" + out.get("text", ""))
        elif out.get("output_type") == "error":
            parts.append("\n".join(out.get("traceback", [])))
        else:
            data = out.get("data", {})
            parts.append(data.get("text/plain", ""))
            parts.append(data.get("text/html", ""))
            if "image/png" in data:
                parts.append("<image/png>")
    return "\n".join(p.replace("\x00stream", "", 1) for p in parts)


def check_outputs(name: str, nb) -> list:
    cells = {c.get("id"): c for c in nb.cells}
    problems = []
    for cid, patterns in EXPECTED[name].items():
        if cid not in cells:
            problems.append(f"{name}: no cell with id {cid!r}")
            continue
        text = _outputs_text(cells[cid])
        for pat in patterns:
            if not re.search(pat, text, flags=re.M):
                problems.append(f"{name} cell {cid!r}: no output matches {pat!r}; got:\n{text[:1500]}")
    return problems


@pytest.fixture(scope="module")
def kernel_root():
    with tempfile.TemporaryDirectory(prefix="dnnkit-kernel-") as d:
        yield _write_kernelspec(Path(d))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_notebook_runs_and_reproduces(name, kernel_root, tmp_path):
    nb = execute(EXAMPLES / name, str(tmp_path), kernel_root)
    problems = check_outputs(name, nb)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_committed_notebook_has_its_outputs(name):
    # the repository shows the notebooks executed: every code cell ran, in order, and the saved outputs
    # carry the same key numbers
    nb = nbformat.read(EXAMPLES / name, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and [c.execution_count for c in code] == list(range(1, len(code) + 1))
    problems = check_outputs(name, nb)
    assert not problems, "\n".join(problems)


def test_every_notebook_is_tested():
    assert sorted(p.name for p in EXAMPLES.glob("*.ipynb")) == sorted(EXPECTED)


def _write_all() -> int:
    """Execute every notebook in place (outputs saved), with this interpreter's kernel."""
    with tempfile.TemporaryDirectory(prefix="dnnkit-kernel-") as d, \
            tempfile.TemporaryDirectory(prefix="dnnkit-nb-") as work:
        root = _write_kernelspec(Path(d))
        bad = []
        for name in sorted(EXPECTED):
            nb = execute(EXAMPLES / name, work, root)
            nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
            nbformat.write(nb, EXAMPLES / name)
            bad += check_outputs(name, nb)
            print("executed", name)
        print("\n".join(bad) or "all key outputs present")
        return 1 if bad else 0


if __name__ == "__main__" and "--write" in sys.argv:
    sys.exit(_write_all())
