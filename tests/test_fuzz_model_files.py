"""Model-file fuzzing (issue 12): 10,000 mutated and hostile files, none crashes, hangs, allocates more than its
size justifies, or loads as something else; each raises ModelFileError (or, for a mutation the format cannot see,
loads the very same network). The long run: ``python -m dnnkit._fuzz --n 1000000``."""
import io
import json
import os
import subprocess
import sys
import tracemalloc
import zipfile

import numpy as np
import pytest

import dnnkit as dk
from dnnkit import _fuzz
from dnnkit.io import ModelFileError


def test_ten_thousand_mutated_model_files():
    # in a child process, so that a crash fails this test instead of killing the run
    code = ("import json, sys\n"
            "from dnnkit._fuzz import run\n"
            "r = run(10_000, seed=0, memory_every=50, slow_s=5.0)\n"
            "print(json.dumps({'n': r['n'], 'counts': r['counts'], 'failures': r['failures'][:20],"
            " 'seconds': r['seconds']}))\n")
    env = dict(os.environ)
    src = os.path.dirname(os.path.dirname(os.path.abspath(dk.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, f"rc={r.returncode} (negative: killed by a signal)\n{r.stderr[-3000:]}"
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["n"] == 10_000 and res["failures"] == []
    for kind in _fuzz.KINDS:
        c = res["counts"][kind]
        assert set(c) <= {"rejected", "identical"} and sum(c.values()) >= 1100
        assert c["rejected"] >= 1000  # the mutations are real: nearly all of them must be detected
    for kind in ("truncate", "members", "huge_shape", "dtype", "zipbomb", "not_zip"):
        assert "identical" not in res["counts"][kind]  # built to be invalid: every one must be refused


@pytest.fixture(scope="module")
def seed_file():
    return _fuzz._seeds()[0]


def test_load_accepts_a_file_object(seed_file):
    data, net = seed_file
    got = dk.Network.load(io.BytesIO(data))
    assert got.theta.tobytes() == net.theta.tobytes() and got.normalizer is not None


def _peak(fn):
    tracemalloc.start()
    try:
        fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


def test_huge_consistent_architecture_without_data_is_refused_before_allocating(seed_file):
    data, _ = seed_file
    h = _fuzz._header_of(data)
    dims = [50_000, 50_000, 1]
    n = dims[1] * (dims[0] + 1) + dims[2] * (dims[1] + 1)
    h.update(layer_dims=dims, n_params=n)
    bad = _fuzz._with_header(data, h, _fuzz._npy_header_only((n,)))  # 20 GB declared, ~1 kB of file
    with pytest.raises(ModelFileError, match="truncated"):
        dk.Network.load(io.BytesIO(bad))
    assert _peak(lambda: pytest.raises(ModelFileError, dk.Network.load, io.BytesIO(bad))) < 1 << 20


def test_compressed_members_are_refused(seed_file):
    data, _ = seed_file
    bomb = _fuzz._zipbomb(1, data)  # 2**22 zero parameters deflated: 32 MB from ~32 kB
    with pytest.raises(ModelFileError, match="compressed"):
        dk.Network.load(io.BytesIO(bomb))
    assert _peak(lambda: pytest.raises(ModelFileError, dk.Network.load, io.BytesIO(bomb))) < 4 << 20


def test_unknown_compression_method_and_duplicate_members(seed_file):
    data, _ = seed_file
    b = bytearray(data)
    # the first local header's compression method (offset 8) set to an unknown one: zipfile raises
    # NotImplementedError, which must come out as a ModelFileError
    b[8:10] = (99).to_bytes(2, "little")
    cd = data.rfind(b"PK\x01\x02")
    b[cd + 10:cd + 12] = (99).to_bytes(2, "little")
    with pytest.raises(ModelFileError):
        dk.Network.load(io.BytesIO(bytes(b)))
    m = _fuzz._members_of(data)
    dup = _fuzz._zip([("header.npy", m["header.npy"]), ("theta.npy", m["theta.npy"]), ("theta.npy", m["theta.npy"])])
    with pytest.raises(ModelFileError, match="twice"):
        dk.Network.load(io.BytesIO(dup))


def test_save_load_round_trip_still_exact(tmp_path, seed_file):
    _, net = seed_file
    p = tmp_path / "m.npz"
    net.save(p)
    with zipfile.ZipFile(p) as z:
        assert all(i.compress_type == zipfile.ZIP_STORED for i in z.infolist())
    got = dk.Network.load(p)
    assert got.theta.tobytes() == net.theta.tobytes()
    np.testing.assert_array_equal(got.normalizer.mean_, net.normalizer.mean_)
