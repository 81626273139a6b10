"""The private native core (dnnkit._core) called directly with bad arguments: every call ends in a Python
exception, never a crash, and never silently writes into a temporary copy of an in-place argument.

The public API validates before it reaches _core; these tests pin the native boundary itself (house rule: bad
input gets a clear Python exception, never a segfault/abort/hang). Calls that used to kill the interpreter run
in a subprocess, so a regression fails one test instead of the whole run."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import dnnkit
from dnnkit import _core

DIMS = [3, 4, 2, 1]
ARGS = ("relu", "sigmoid", "bce", 0.01)
P = sum(DIMS[l] * DIMS[l - 1] + DIMS[l] for l in range(1, len(DIMS)))


@pytest.fixture
def data():
    rs = np.random.RandomState(0)
    theta = rs.randn(P)
    X = rs.randn(3, 6)
    Y = (rs.rand(1, 6) > 0.5).astype(np.float64)
    return theta, X, Y


def trainer(X, Y, dims=DIMS, hidden="relu", keep=(), batch_size=2, cls=_core.Trainer64):
    return cls(list(dims), hidden, "sigmoid", "bce", 0.01, X, Y, "gd", 0.1, 0.9, 0.9, 0.999, 1e-8, 0.0, 0.0,
               list(keep), 0, batch_size)


def gc_kwargs(theta, X, Y, eps=1e-6, **kw):
    d = dict(dims=DIMS, hidden="relu", output="sigmoid", loss="bce", alpha=0.01, theta=theta, X=X, Y=Y, keep=[],
             seed=0, step=0, masks=[], l2=0.0, l1=0.0)
    d.update(kw)
    return dict(problem=_core.GradcheckProblem(**d), eps=eps)  # the problem is validated when built


# ---------------------------------------------------------------- calls that used to crash the interpreter
PRELUDE = """
import numpy as np
from dnnkit import _core as C
"""
CRASHERS = {
    # hidden softmax: act_backward threw inside the wide path's OpenMP region -> std::terminate (SIGABRT)
    "mlp_hidden_softmax_wide": """
        n = C.MLP64([50, 200, 200, 1], "softmax", "sigmoid", "bce", 0.01)
        n.backward(np.full(n.n_params, 0.01), np.ones((50, 2000)), np.ones((1, 2000)), [], 0, 0, [], 0.0, 0.0,
                   np.zeros(n.n_params))""",
    # ... and act_delta inside the gradient checker's OpenMP region (SIGABRT)
    "gradcheck_hidden_softmax": """
        C.gradcheck_coords(C.GradcheckProblem([3, 4, 1], "softmax", "sigmoid", "bce", 0.01, np.ones(21),
                                              np.ones((3, 5)), np.ones((1, 5))), 1e-6, np.arange(21))""",
    "gradcheck_directions_hidden_softmax": """
        C.gradcheck_directions(C.GradcheckProblem([3, 4, 1], "softmax", "sigmoid", "bce", 0.01, np.ones(21),
                                                  np.ones((3, 5)), np.ones((1, 5))), 1e-6, np.ones((3, 21)))""",
    "trainer_hidden_softmax_wide": """
        d = [100, 300, 300, 1]
        t = C.Trainer64(d, "softmax", "sigmoid", "bce", 0.01, np.ones((100, 1000)), np.ones((1, 1000)), "gd", 0.1,
                        0.9, 0.9, 0.999, 1e-8, 0.0, 0.0, [], 0, 0)
        t.run(np.zeros(sum(d[l] * d[l - 1] + d[l] for l in range(1, 4))), 1)""",
    # dims.front() on an empty list (SIGSEGV)
    "trainer_empty_dims": """
        C.Trainer64([], "relu", "sigmoid", "bce", 0.01, np.ones((3, 5)), np.ones((1, 5)), "gd", 0.1, 0.9, 0.9,
                    0.999, 1e-8, 0.0, 0.0, [], 0, 0)""",
    # OpenMP asked for 10^6 threads (SIGSEGV)
    "set_num_threads_huge": """
        C.set_num_threads(10**6)
        C.dropout_mask(2000, 2000, 0.5, 0, 0, 0)""",
}


@pytest.mark.parametrize("case", sorted(CRASHERS), ids=sorted(CRASHERS))
def test_former_crashers_raise_a_python_exception(case):
    src = os.path.dirname(os.path.dirname(os.path.abspath(dnnkit.__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    code = PRELUDE + textwrap.dedent(CRASHERS[case])
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 1, f"rc={r.returncode} (negative: killed by a signal)\n{r.stderr[-2000:]}"
    assert "ValueError" in r.stderr.strip().splitlines()[-1], r.stderr[-2000:]


# ---------------------------------------------------------------- the same contracts, in process
def test_hidden_softmax_rejected_everywhere(data):
    theta, X, Y = data
    with pytest.raises(ValueError, match="softmax is not a hidden activation"):
        _core.MLP32(DIMS, "softmax", "sigmoid", "bce", 0.01)
    with pytest.raises(ValueError, match="softmax is not a hidden activation"):
        trainer(X, Y, hidden="softmax")
    with pytest.raises(ValueError, match="softmax is not a hidden activation"):
        _core.gradcheck_component_directions(**gc_kwargs(theta, X, Y, hidden="softmax"), V=np.ones((2, P)))
    _core.MLP64(DIMS, "relu", "softmax", "ce", 0.01)  # softmax stays a valid output


def test_set_num_threads_bounds():
    before = _core.get_num_threads()
    try:
        with pytest.raises(ValueError, match="n must be <="):
            _core.set_num_threads(10**6)
        assert _core.get_num_threads() == before  # a failed call changes nothing
        with pytest.raises(ValueError):
            _core.set_num_threads(-1)
    finally:  # a regression must not leave 10^6 threads asked for the tests that follow
        _core.set_num_threads(before)


def test_trainer_needs_two_layers(data):
    _, X, Y = data
    # [] (which crashed) runs in a subprocess above
    with pytest.raises(ValueError, match="at least an input and an output layer"):
        trainer(X, Y, dims=[3])


@pytest.mark.parametrize("n_masks", [len(DIMS), len(DIMS) + 3], ids=["L+1", "L+4"])
def test_masks_longer_than_the_layers_are_rejected(data, n_masks):
    # masks[l] was checked against dims[l] for every l given: past the last layer that read beyond dims
    theta, X, Y = data
    masks = [None] * (n_masks - 1) + [np.ones((5, X.shape[1]))]
    net = _core.MLP64(DIMS, *ARGS)
    with pytest.raises(ValueError, match="masks has more entries than layers"):
        net.forward(theta, X, [], 0, 0, masks)
    with pytest.raises(ValueError, match="masks has more entries than layers"):
        _core.gradcheck_coords(**gc_kwargs(theta, X, Y, masks=masks), indices=np.arange(P))


@pytest.mark.parametrize("kp", [0.0, -0.5, float("nan"), 1.5], ids=["zero", "negative", "nan", "above-one"])
def test_keep_probabilities_outside_0_1_are_rejected(data, kp):
    # keep <= 0 reached keep_threshold's double -> uint64 conversion of a negative value (UB) or divided by 0
    theta, X, Y = data
    keep = [1.0, kp]
    net = _core.MLP64(DIMS, *ARGS)
    match = r"keep probabilities must lie in \(0, 1\]"
    with pytest.raises(ValueError, match=match):
        net.forward(theta, X, keep, 0, 0, [])
    with pytest.raises(ValueError, match=match):
        net.backward(theta, X, Y, keep, 0, 0, [], 0.0, 0.0, np.zeros(P))
    with pytest.raises(ValueError, match=match):
        trainer(X, Y, keep=keep)
    with pytest.raises(ValueError, match=match):
        _core.gradcheck_coords(**gc_kwargs(theta, X, Y, keep=keep), indices=np.arange(P))
    with pytest.raises(ValueError, match=match):
        _core.dropout_mask(3, 5, kp, 0, 0, 0)


def test_dropout_mask_sizes():
    with pytest.raises(ValueError):
        _core.dropout_mask(-1, 5, 0.5, 0, 0, 0)
    with pytest.raises(ValueError, match="2\\^30"):
        _core.dropout_mask(1, 2**31 - 1, 0.5, 0, 0, 0)  # m + 3 overflowed int in the Philox block count
    assert _core.dropout_mask(0, 5, 0.5, 0, 0, 0).shape == (0, 5)


@pytest.mark.parametrize("bad", ["float32", "strided"])
def test_backward_grad_is_never_a_silent_copy(data, bad):
    # grad is written in place: a converted copy (pybind11's default for a float32 or strided array) received the
    # gradient and was thrown away, leaving the caller's buffer untouched without an error
    theta, X, Y = data
    net = _core.MLP64(DIMS, *ARGS)
    g = np.zeros(P, np.float32) if bad == "float32" else np.zeros(2 * P)[::2]
    with pytest.raises(TypeError, match="grad must be a C-contiguous float64 array"):
        net.backward(theta, X, Y, [], 0, 0, [], 0.0, 0.0, g)
    assert not g.any()
    ro = np.zeros(P)
    ro.setflags(write=False)
    with pytest.raises(ValueError, match="read-only"):
        net.backward(theta, X, Y, [], 0, 0, [], 0.0, 0.0, ro)
    good = np.zeros(P)
    net.backward(theta, X, Y, [], 0, 0, [], 0.0, 0.0, good)
    assert good.any()


@pytest.mark.parametrize("bad", ["float32", "strided"])
def test_trainer_theta_is_never_a_silent_copy(data, bad):
    theta, X, Y = data
    t = trainer(X, Y)
    th = theta.astype(np.float32) if bad == "float32" else np.repeat(theta, 2)[::2]
    before = th.copy()
    with pytest.raises(TypeError, match="theta must be a C-contiguous float64 array"):
        t.run(th, 2)
    np.testing.assert_array_equal(th, before)
    assert t.step == 0  # nothing ran
    th = theta.copy()
    t.run(th, 2)
    assert not np.array_equal(th, theta)


def test_layer_sizes_beyond_2_30_are_rejected():
    # sizes near INT_MAX overflowed the int arithmetic of the work partitions (e.g. n + 511 in balanced_chunks)
    with pytest.raises(ValueError, match="2\\^30"):
        _core.MLP64([2**31 - 1, 2**31 - 1], *ARGS)
    with pytest.raises(ValueError, match="2\\^30"):
        _core.MLP32([1, 2**30 + 1, 1], *ARGS)


def test_more_than_2_30_examples_are_rejected_before_any_work():
    # m was cast to int: 2^32 + 1 columns became m = 1 (forward silently on the first example), 2^31 + 5 a
    # negative m. np.empty only reserves address space; nothing is read before the check.
    try:
        X = np.empty((1, 2**30 + 1), np.float32)
    except MemoryError:  # pragma: no cover - a machine without the address space
        pytest.skip("cannot reserve a 4 GiB array")
    net = _core.MLP32([1, 1], "relu", "linear", "mse", 0.01)
    theta = np.zeros(2, np.float32)
    with pytest.raises(ValueError, match="more than 2\\^30 columns"):
        net.forward(theta, X, [], 0, 0, [])
    with pytest.raises(ValueError, match="more than 2\\^30 columns"):
        net.cost(theta, X, X, [], 0, 0, [], 0.0, 0.0)
    with pytest.raises(ValueError, match="more than 2\\^30 columns"):
        trainer(X, X, dims=[1, 1], cls=_core.Trainer32)


def test_workspace_cache_after_release_is_empty(data):
    theta, X, _ = data
    net = _core.MLP64(DIMS, *ARGS)
    assert net.cache() == {}
    net.forward(theta, X, [], 0, 0, [])
    assert set(net.cache()) == {"Z1", "A1", "Z2", "A2", "Z3", "A3"}
    net.release()
    assert net.cache() == {}
