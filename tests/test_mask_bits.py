"""Dropout mask bits pinned to their values before the masks got one home in C++ (issue 8).

The masks are a pure function of (seed, step, layer, unit, example) through Philox4x32-10: every entry point that
draws them (dk.dropout_mask, the passes of Network.forward/backward, the trainer, the gradient checker) must keep
giving these bits. The hashes were computed by the code of commit 0dd3f98 (before the refactor); an independent
pure-Python Philox below checks the generator itself on small shapes.
"""
import hashlib

import numpy as np
import pytest

import dnnkit as dk
from dnnkit import _core

# (n, m, keep_prob, seed, step, layer) -> (sha256 of the n x m 0/1 bytes, first 32 hex digits; number kept)
PINNED = {
    (1, 1, 0.5, 0, 0, 1): ("6e340b9cffb37a989ca544e6bb780a2c", 0),
    (3, 7, 0.5, 1, 0, 0): ("68e578ac0cbb4adc5a0f37597018f6ad", 10),
    (5, 33, 0.8, 12345, 6, 2): ("cbd21cab2f100a69119fb6d553b1bd58", 129),
    (64, 1000, 0.86, 2**63 + 5, 2**32 - 1, 3): ("8d35286c306b129725e93a8e58292c51", 54937),
    (300, 301, 0.3, 7, 100, 1): ("7ad5b027a578e85d6de11d5d17eb0b72", 27082),
    (17, 129, 0.999, 99, 3, 0): ("7ca33d0980ebb362fa616866e88f1008", 2190),
    (8, 4096, 0.5, 42, 17, 4): ("ccdafce9c911f0ab888b27fefcd17154", 16415),
    (2, 3, 1.0, 5, 5, 5): ("dfea2964b5deedea7b1ef077de529c39", 6),
}

SMALL = {
    (4, 10, 0.5, 3, 2, 1): [[0, 1, 0, 0, 0, 1, 1, 1, 1, 1], [1, 0, 0, 1, 1, 0, 0, 1, 1, 1],
                            [0, 1, 1, 1, 0, 1, 1, 1, 0, 0], [0, 0, 1, 0, 0, 1, 0, 0, 0, 1]],
    (3, 9, 0.7, 2024, 0, 0): [[1, 1, 0, 1, 1, 1, 0, 1, 1], [1, 1, 1, 1, 1, 0, 1, 1, 1],
                              [0, 1, 0, 0, 1, 1, 1, 1, 1]],
}


def _digest(D):
    return hashlib.sha256(np.ascontiguousarray(D, dtype=np.uint8).tobytes()).hexdigest()[:32]


@pytest.mark.parametrize("cfg", sorted(PINNED))
def test_dropout_mask_bits_are_pinned(cfg):
    D = _core.dropout_mask(*cfg)
    assert D.shape == cfg[:2] and D.dtype == np.uint8
    assert (_digest(D), int(D.sum())) == PINNED[cfg]


@pytest.mark.parametrize("cfg", sorted(SMALL))
def test_small_masks_literal(cfg):
    n, m, kp, seed, step, layer = cfg
    np.testing.assert_array_equal(_core.dropout_mask(*cfg), np.array(SMALL[cfg], dtype=np.uint8))
    # the public function gives the same bits (as float64 0/1)
    D = dk.dropout_mask((n, m), kp, seed=seed, step=step, layer=layer)
    np.testing.assert_array_equal(D, np.array(SMALL[cfg], dtype=np.float64))


# ------------------------------------------------------------------ an independent Philox4x32-10 (Salmon et al.)
_M32 = 0xFFFFFFFF


def _philox_block(key, c):
    c = list(c)
    k0, k1 = key & _M32, (key >> 32) & _M32
    for _ in range(10):
        p0, p1 = 0xD2511F53 * c[0], 0xCD9E8D57 * c[2]
        c = [(p1 >> 32) ^ c[1] ^ k0, p1 & _M32, (p0 >> 32) ^ c[3] ^ k1, p0 & _M32]
        k0, k1 = (k0 + 0x9E3779B9) & _M32, (k1 + 0xBB67AE85) & _M32
    return c


def _python_mask(n, m, kp, seed, step, layer):
    thr = 1 << 32 if kp >= 1.0 else int(kp * 4294967296.0)
    out = np.zeros((n, m), dtype=np.uint8)
    for i in range(n):
        for j in range(0, m, 4):
            r = _philox_block(seed, (j >> 2, i, layer, step))  # counter (example / 4, unit, layer, step)
            for t in range(min(4, m - j)):
                out[i, j + t] = r[t] < thr
    return out


# (the shapes of the former test that _core.train_keep_mask, now gone, equalled dropout_mask: one generator now)
@pytest.mark.parametrize("cfg", [(4, 10, 0.5, 3, 2, 1), (3, 9, 0.7, 2024, 0, 0), (5, 33, 0.8, 12345, 6, 2),
                                 (2, 70, 0.25, 2**64 - 1, 2**32 - 1, 2**32 - 1)]
                         + [(n, m, kp, 12345, 6, 2) for n, m in [(1, 1), (3, 7), (5, 33), (64, 1000)]
                            for kp in (0.5, 0.86, 1.0)])
def test_masks_match_an_independent_philox(cfg):
    np.testing.assert_array_equal(_core.dropout_mask(*cfg), _python_mask(*cfg))


# ------------------------------------------------------------------ the passes draw the same bits
@pytest.mark.parametrize("m", [7, 40, 300])
def test_forward_pass_drops_exactly_the_pinned_units(m):
    # relu net with positive weights, biases and inputs: every unit is active, so the zeros of the cached
    # activations are exactly the dropout mask the pass drew (input layer included); independent of the BLAS.
    dims = [6, 9, 5, 1]
    net = dk.Network(dims, hidden="relu", output="sigmoid")
    g = np.random.default_rng(3)
    for l in range(1, len(dims)):
        net.params[f"W{l}"][...] = g.uniform(0.1, 1.0, net.params[f"W{l}"].shape)
        net.params[f"b{l}"][...] = 0.5
    X = g.uniform(0.5, 1.0, (dims[0], m))
    keep = [0.6, 0.7, 0.5]
    _, cache = net.forward(X, keep_prob=keep, seed=2024, step=9)
    for l in range(3):
        expect = _core.dropout_mask(dims[l], m, keep[l], 2024, 9, l)
        np.testing.assert_array_equal(cache[f"A{l}"] != 0, expect.astype(bool))
