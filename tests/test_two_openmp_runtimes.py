"""dnnkit and PyTorch in one process: each brings its own OpenMP runtime (the wheel vendors libgomp as
dnnkit.libs/libgomp-<hash>.so, PyTorch ships its own), and each its own BLAS. Both import orders must work,
with a multi-threaded dnnkit op and a multi-threaded torch op giving correct results, in a fresh process
(a crash or a hang would otherwise take the test run with it)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytest.importorskip("torch")

CODE = r"""
import sys
order = sys.argv[1].split(",")
mods = {}
for name in order:
    mods[name] = __import__(name)
dk, torch = mods["dnnkit"], mods["torch"]
import numpy as np

dk.set_num_threads(2)
torch.set_num_threads(2)
for rep in range(2):                       # alternate the two runtimes' parallel regions
    net = dk.Network([6, 16, 8, 1], hidden="relu", output="sigmoid")
    net.initialize("he", rng=0)
    rng = np.random.default_rng(1)
    X = rng.standard_normal((6, 64)); Y = (rng.random((1, 64)) < 0.5).astype(float)
    report = dk.gradcheck(net, X, Y, l2=0.1)
    assert report.verdict == "correct", report
    # the same forward in torch, from dnnkit's parameters: both libraries compute the same AL
    p = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in net.params.items()}
    A = torch.from_numpy(X)
    A = torch.relu(p["W1"] @ A + p["b1"]); A = torch.relu(p["W2"] @ A + p["b2"])
    AL_t = torch.sigmoid(p["W3"] @ A + p["b3"]).numpy()
    AL, _ = net.forward(X)
    assert np.allclose(AL, AL_t, rtol=1e-12, atol=1e-14), abs(AL - AL_t).max()
    big = torch.randn(300, 300, dtype=torch.float64)
    assert torch.allclose(big @ torch.linalg.inv(big), torch.eye(300, dtype=torch.float64), atol=1e-8)
print("ok", dk.get_num_threads(), torch.get_num_threads())
"""


@pytest.mark.parametrize("order", ["dnnkit,torch", "torch,dnnkit"])
def test_dnnkit_and_torch_in_one_process(order):
    import dnnkit  # the subprocess imports the same dnnkit as this test run (installed or in-tree)

    env = dict(os.environ)
    src = os.path.dirname(os.path.dirname(os.path.abspath(dnnkit.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    r = subprocess.run([sys.executable, "-c", CODE, order], capture_output=True, text=True, env=env, timeout=180)
    assert r.returncode == 0, f"import order {order}: exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    assert r.stdout.split() == ["ok", "2", "2"], r.stdout
