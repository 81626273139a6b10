"""The training passes' ISA clones give the same bits: the lean pass, the wide path's tasks (forward chunk,
backward tile / chunk) and the fused update + gradient-norm pass are each compiled for the baseline ISA and for
AVX2 (chosen at run time, forced here with _core.set_simd). Trained parameters and every History series must be
identical on both paths, for gd / momentum / adam, dropout and mini-batches, lean and wide nets."""
import numpy as np
import pytest

import dnnkit as dk
from dnnkit import _core

CASES = [  # (layer_dims, m): lean path, wide path (two column chunks), wide path with a first layer of 7 norm blocks
    ([2, 20, 3, 1], 300),
    ([32, 256, 64, 1], 300),
    ([784, 160, 10], 256),
]


def _train(dims, m, dtype, simd, **kw):
    g = np.random.default_rng(3)
    X = g.standard_normal((dims[0], m)).astype(dtype)
    out, loss = ("sigmoid", "bce") if dims[-1] == 1 else ("softmax", "ce")
    Y = (g.random((1, m)) < 0.5).astype(dtype) if dims[-1] == 1 else np.eye(dims[-1], dtype=dtype)[:, g.integers(0, dims[-1], m)]
    net = dk.Network(dims, output=out, loss=loss, dtype=dtype).initialize("he", rng=0)
    _core.set_simd(simd)
    try:
        h = net.fit(X, Y, epochs=4, learning_rate=0.01, seed=5, **kw)
    finally:
        _core.set_simd("auto")
    return net.theta.copy(), h


@pytest.mark.skipif("avx2" not in _core.simd_info()["available"], reason="no AVX2 on this CPU")
@pytest.mark.parametrize("dims,m", CASES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kw", [dict(), dict(optimizer="momentum", l2=0.3),
                                dict(optimizer="adam", keep_prob=0.8, batch_size=64)], ids=["gd", "momentum", "adam-dropout-batches"])
def test_baseline_and_avx2_training_are_bit_identical(dims, m, dtype, kw):
    if "keep_prob" in kw and len(dims) == 3:
        kw = dict(kw, keep_prob=[1.0, 0.8])
    ta, ha = _train(dims, m, dtype, "baseline", **kw)
    tb, hb = _train(dims, m, dtype, "avx2", **kw)
    assert ta.tobytes() == tb.tobytes()
    for name in ("train_cost", "train_error", "grad_norms"):
        a, b = np.asarray(getattr(ha, name)), np.asarray(getattr(hb, name))
        assert a.shape == b.shape and a.shape[0] == 4
        assert a.tobytes() == b.tobytes(), name
