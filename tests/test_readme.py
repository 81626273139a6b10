"""The README's Python code blocks run, in order, in one namespace: they cannot drift from the API.

Blocks fenced ```py are illustrative (a cluster address, ``...`` for "your arguments"): they are compiled,
so their syntax cannot rot, but not run. The README leaves a few names to the reader (your own gradients, your own cost function, a dev set); the
prelude below defines exactly those, after the first block, and nothing else.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

README = Path(__file__).resolve().parent.parent / "README.md"

# names the README's later blocks assume the reader has (run after block 1, which defines net, X, Y, grads)
READER_PRELUDE = '''
my_grads = {k: v.copy() for k, v in net.backward(X, Y).items()}      # "your" gradients (no l2)
params = {k: v.copy() for k, v in net.params.items()}
def cost_fn(p):                                                             # "your" J(params)
    return dk.Network([2, 10, 5, 1], params=p).cost(X, Y)
grads = my_grads
X_dev, Y_dev = dk.datasets.circles(m=100, noise=0.05, seed=2)
'''


def python_blocks(text: str, fence: str = "```python") -> list[tuple[int, str]]:
    """(line number, code) of every block fenced with ``fence``."""
    blocks, lines = [], text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].strip() == fence:
            start, body = i + 1, []
            i += 1
            while i < len(lines) and lines[i].strip() != "```":
                body.append(lines[i])
                i += 1
            blocks.append((start + 1, "\n".join(body)))
        i += 1
    return blocks


def test_readme_has_python_blocks():
    blocks = python_blocks(README.read_text(encoding="utf-8"))
    assert len(blocks) >= 3
    assert any("dk.gradcheck" in code for _, code in blocks)


def test_readme_illustrative_blocks_compile():
    for line, code in python_blocks(README.read_text(encoding="utf-8"), fence="```py"):
        compile(code, f"README.md:{line}", "exec")


def test_readme_python_blocks_run(tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)                  # net.save("model.npz") and the like write here
    ns: dict = {"__name__": "__readme__"}
    blocks = python_blocks(README.read_text(encoding="utf-8"))
    for k, (line, code) in enumerate(blocks):
        try:
            exec(compile(code, f"README.md:{line}", "exec"), ns)
        except Exception as exc:  # name the block that drifted
            raise AssertionError(f"README.md python block at line {line} fails: {type(exc).__name__}: {exc}") from exc
        if k == 0:
            exec(READER_PRELUDE, ns)
    out = capsys.readouterr().out
    # what block 1 promises to print: the gradient-check table with a verdict, and evaluate's dict
    assert re.search(r"difference = \S+\s+->\s+CORRECT", out), out[:2000]
    assert re.search(r"\{'cost': [^}]*'accuracy': ", out), out[-2000:]
    assert isinstance(ns["net"], ns["dk"].Network) and (tmp_path / "model.npz").is_file()
    assert np.isfinite(ns["history"].train_cost[-1])
