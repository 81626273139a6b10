"""Model-file fuzzing: mutated and hostile model files for :func:`dnnkit.io.load`.

Every case is a byte string loaded from memory (``io.BytesIO``). The oracle: ``load`` either raises
:class:`dnnkit.io.ModelFileError`, or returns a network identical to the one the file was made from (a mutation
the format cannot see, e.g. a flipped bit in a ZIP timestamp; every data byte is covered by the ZIP's CRC-32).
Anything else is a failure: another exception type, a different network, a load slower than ``slow_s``, or — for
the sampled cases measured with tracemalloc — a peak allocation beyond what the file's size justifies.

Kinds of case (``KINDS``): bit flips, byte overwrites, truncations, swapped / renamed / duplicated / extra
members, huge declared shapes (header and .npy), wrong dtypes (ints, float16, complex, structured, object /
pickle, bytes headers), zip bombs (deflated members), broken JSON fields, non-ZIP data.

    python -m dnnkit._fuzz --n 1000000 --seed 1     # the long run (prints a summary; exit 1 on any failure)

The suite runs 10,000 cases (tests/test_fuzz_model_files.py).
"""
from __future__ import annotations

import argparse
import io
import json
import struct
import sys
import time
import tracemalloc
import zipfile

import numpy as np

KINDS = ("bitflip", "bytes", "truncate", "members", "huge_shape", "dtype", "zipbomb", "json", "not_zip")


# ----------------------------------------------------------------------------- building blocks

def _npy(arr) -> bytes:
    b = io.BytesIO()
    np.lib.format.write_array(b, np.asanyarray(arr), allow_pickle=True)
    return b.getvalue()


def _npy_header_only(shape, descr="<f8") -> bytes:
    """A .npy that declares ``shape`` but holds no data (what a hostile file would do)."""
    b = io.BytesIO()
    np.lib.format.write_array_header_1_0(b, {"descr": descr, "fortran_order": False, "shape": tuple(shape)})
    return b.getvalue()


def _zip(members, compress=zipfile.ZIP_STORED) -> bytes:
    import warnings

    b = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(b, "w", compression=compress) as z:
        warnings.simplefilter("ignore")  # "Duplicate name": on purpose
        for name, data in members:
            z.writestr(zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0)), data, compress_type=compress)
    return b.getvalue()


def _seeds():
    """(bytes of a valid model, the network) for a few small models (float64/float32, with a normalizer and a
    training config)."""
    from .data import Standardizer
    from .network import Network

    out = []
    g = np.random.default_rng(0)
    for dims, dtype, hidden, output in (([3, 4, 1], "float64", "relu", "sigmoid"),
                                        ([2, 5, 3, 3], "float32", "tanh", "softmax"),
                                        ([4, 2, 1], "float64", "leaky_relu", "linear")):
        net = Network(dims, hidden=hidden, output=output, dtype=dtype).initialize(rng=1)
        if dims[0] == 3:
            net.normalizer = Standardizer().fit(g.standard_normal((3, 20)))
            net.training_config = {"epochs": 3, "learning_rate": 0.1, "seed": 7, "note": "x" * 40}
        import os
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            net.save(os.path.join(d, "m.npz"))
            with open(os.path.join(d, "m.npz"), "rb") as f:
                out.append((f.read(), net))
    return out


def _members_of(data: bytes) -> dict:
    key = ("members", data)
    if key not in _CACHE:  # only the few seed files are ever parsed
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            _CACHE[key] = {n: z.read(n) for n in z.namelist()}
    return dict(_CACHE[key])


def _header_of(data: bytes) -> dict:
    key = ("header", data)
    if key not in _CACHE:
        h = np.lib.format.read_array(io.BytesIO(_members_of(data)["header.npy"]), allow_pickle=False)
        _CACHE[key] = str(h[()])
    return json.loads(_CACHE[key])  # a fresh dict each time


def _with_header(data: bytes, header: dict, theta: bytes | None = None) -> bytes:
    m = _members_of(data)
    return _zip([("header.npy", _npy(np.array(json.dumps(header)))),
                 ("theta.npy", m["theta.npy"] if theta is None else theta)])


_CACHE: dict = {}
_ODD_VALUES = [None, True, -1, 0, 2**31, 2**63, 10**30, -(10**30), 1e308, -1e-308, "", "x" * 300, "relu", [],
               [1], [[1]], {}, {"a": 1}, [2**31, 1], [0, 1], [1.5, 2], ["3", "1"]]


# ----------------------------------------------------------------------------- the cases

def _case(kind, rng, seeds):
    data, net = seeds[int(rng.integers(len(seeds)))]
    b = bytearray(data)
    if kind == "bitflip":
        for _ in range(int(rng.integers(1, 9))):
            i = int(rng.integers(len(b) * 8))
            b[i // 8] ^= 1 << (i % 8)
        return bytes(b), net
    if kind == "bytes":
        start = int(rng.integers(len(b)))
        n = int(rng.integers(1, 17))
        fill = [0x00, 0xFF, 0x7F, 0x80][int(rng.integers(4))] if rng.random() < 0.5 else None
        for i in range(start, min(len(b), start + n)):
            b[i] = int(rng.integers(256)) if fill is None else fill
        return bytes(b), net
    if kind == "truncate":
        return bytes(b[:int(rng.integers(len(b)))]), net
    if kind == "members":
        m = _members_of(data)
        v = int(rng.integers(6))
        if v == 0:    # swapped contents
            return _zip([("header.npy", m["theta.npy"]), ("theta.npy", m["header.npy"])]), None
        if v == 1:    # renamed
            return _zip([("header.npy", m["header.npy"]), ("params.npy", m["theta.npy"])]), None
        if v == 2:    # duplicated name (the later one wins in zipfile)
            return _zip([("header.npy", m["header.npy"]), ("theta.npy", m["theta.npy"]),
                         ("theta.npy", _npy(np.zeros(3)))]), None
        if v == 3:    # an extra member
            return _zip([*m.items(), ("extra.npy", _npy(np.zeros(2)))]), None
        if v == 4:    # one member only
            name = ["header.npy", "theta.npy"][int(rng.integers(2))]
            return _zip([(name, m[name])]), None
        return _zip([("../header.npy", m["header.npy"]), ("theta.npy", m["theta.npy"])]), None
    if kind == "huge_shape":
        h = _header_of(data)
        v = int(rng.integers(5))
        if v == 0:    # a consistent huge architecture, theta declared with its shape but absent
            dims = [int(rng.integers(10_000, 60_000)), int(rng.integers(10_000, 60_000)), 1]
            n = dims[1] * (dims[0] + 1) + dims[2] * (dims[1] + 1)
            h.update(layer_dims=dims, n_params=n)
            return _with_header(data, h, _npy_header_only((n,), "<f8" if h["dtype"] == "float64" else "<f4")), None
        if v == 1:    # the right architecture, theta declared astronomically long
            return _with_header(data, h, _npy_header_only((2**62,))), None
        if v == 2:    # theta declared with a negative or multi-dimensional shape
            shape = [(-1,), (h["n_params"], 2**40), (2**31, 2**31), ()][int(rng.integers(4))]
            return _with_header(data, h, _npy_header_only(shape)), None
        if v == 3:    # a header string declared enormous
            m = _members_of(data)
            return _zip([("header.npy", _npy_header_only((), "<U1000000000")), ("theta.npy", m["theta.npy"])]), None
        dims = [2**31 - 1, 2**31 - 1, 1]  # within the per-layer limit, product far beyond memory
        h.update(layer_dims=dims, n_params=dims[1] * (dims[0] + 1) + dims[2] * (dims[1] + 1))
        return _with_header(data, h), None
    if kind == "dtype":
        h = _header_of(data)
        n = h["n_params"]
        v = int(rng.integers(8))
        if v == 7:    # a header that is not a unicode string
            m = _members_of(data)
            alt = [np.array(json.dumps(h).encode()), np.array([json.dumps(h)]), np.zeros(3),
                   np.array(json.dumps(h), dtype=object)][int(rng.integers(4))]
            return _zip([("header.npy", _npy(alt)), ("theta.npy", m["theta.npy"])]), None
        theta = [np.zeros(n, np.int64), np.zeros(n, np.float16), np.zeros(n, np.complex128),
                 np.zeros(n, [("a", "<f8")]), np.zeros(n, object), np.zeros(n, bool),
                 np.zeros(n, ">f4" if h["dtype"] == "float64" else ">f8")][v]
        return _with_header(data, h, _npy(theta)), None
    if kind == "zipbomb":
        v = int(rng.integers(3))
        data = seeds[0][0]  # one bomb of each variant is enough (they are costly to build)
        key = ("zipbomb", v)
        if key not in _CACHE:
            _CACHE[key] = _zipbomb(v, data)
        return _CACHE[key], None
    if kind == "json":
        h = _header_of(data)
        key = list(h)[int(rng.integers(len(h)))]
        v = int(rng.integers(4))
        if v == 0:
            del h[key]
        elif v == 1:
            h[key] = _ODD_VALUES[int(rng.integers(len(_ODD_VALUES)))]
        elif v == 2:  # inside the normalizer / training config
            h["normalizer"] = {"type": "Standardizer", "state": {
                "mean": _ODD_VALUES[int(rng.integers(len(_ODD_VALUES)))],
                "std": _ODD_VALUES[int(rng.integers(len(_ODD_VALUES)))]}}
        else:         # raw text damage: not JSON, deep nesting, NaN, a non-object
            raw = ['{"format": "dnnkit-model",', "[" * 100000 + "]" * 100000, '{"version": NaN}', "[1, 2]",
                   '"just a string"', json.dumps(h).replace('"version": 1', '"version": 1e400')][int(rng.integers(6))]
            m = _members_of(data)
            return _zip([("header.npy", _npy(np.array(raw))), ("theta.npy", m["theta.npy"])]), None
        # a self-consistent header with other metadata (optional fields dropped, another alpha) is a valid
        # model: the oracle then asks for the same architecture and parameters, or a ModelFileError
        return _with_header(data, h), net
    # not_zip
    v = int(rng.integers(6))
    if v == 0:
        return b"", None
    if v == 1:
        return bytes(rng.integers(0, 256, int(rng.integers(1, 4096)), dtype=np.uint8)), None
    if v == 2:
        return _npy(np.zeros(5)), None
    if v == 3:
        import pickle

        return pickle.dumps({"W1": np.zeros((2, 2))}), None
    if v == 4:  # a ZIP end-of-central-directory record claiming 65535 entries, nothing else
        return struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0, 0), None
    return b"PK\x03\x04" + bytes(100), None


def _zipbomb(v, data) -> bytes:
    m = _members_of(data)
    if v == 0:    # a header that inflates to ~20 MB (5 M characters; a valid JSON object padded with spaces)
        big = np.array(" " * (5 << 20) + json.dumps(_header_of(data)))
        return _zip([("header.npy", _npy(big)), ("theta.npy", m["theta.npy"])], zipfile.ZIP_DEFLATED)
    if v == 1:    # a consistent architecture of 2**22 zero parameters (32 MB), deflated to ~32 kB
        h = _header_of(data)
        dims = [2047, 2048, 1]
        n = dims[1] * (dims[0] + 1) + dims[2] * (dims[1] + 1)
        h.update(layer_dims=dims, n_params=n, dtype="float64", normalizer=None)
        return _zip([("header.npy", _npy(np.array(json.dumps(h)))), ("theta.npy", _npy(np.zeros(n)))],
                    zipfile.ZIP_DEFLATED)
    # the valid model, deflated (not what save writes)
    return _zip(list(m.items()), zipfile.ZIP_DEFLATED)


def _same(a, b, metadata=True) -> bool:
    if list(a.layer_dims) != list(b.layer_dims) or a.theta.tobytes() != b.theta.tobytes():
        return False
    return not metadata or (a.hidden == b.hidden and a.output == b.output and a.loss == b.loss
                            and a.dtype == b.dtype and a.alpha == b.alpha)


def run(n: int = 10_000, seed: int = 0, slow_s: float = 2.0, memory_every: int = 50, time_limit: float | None = None,
        out=None) -> dict:
    """Run ``n`` cases; -> {"counts": {kind: {outcome: count}}, "failures": [...], "n": cases run, "seconds"}.
    Outcomes: "rejected" (ModelFileError), "identical" (a mutation the format cannot see; the same network)."""
    from .io import ModelFileError, load

    rng = np.random.default_rng(seed)
    seeds = _seeds()
    counts: dict[str, dict] = {k: {} for k in KINDS}
    failures = []
    t_start = time.perf_counter()
    done = 0
    for i in range(n):
        if time_limit is not None and time.perf_counter() - t_start > time_limit:
            break
        kind = KINDS[i % len(KINDS)]
        data, original = _case(kind, rng, seeds)
        measure = memory_every and i % memory_every == 0
        if measure:
            tracemalloc.start()
        t = time.perf_counter()
        try:
            got = load(io.BytesIO(data))
            same = original is not None and _same(got, original, metadata=kind != "json")
            outcome = "identical" if same else "LOADED-DIFFERENT"
        except ModelFileError:
            outcome = "rejected"
        except Exception as e:  # noqa: BLE001 - that is what the fuzzer looks for
            outcome = f"{type(e).__name__}: {str(e)[:120]}"
        dt = time.perf_counter() - t
        if measure:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            # what a file justifies: its own size a few times over (parsing, the network, one conversion)
            if peak > 8 * len(data) + (4 << 20):
                failures.append((i, kind, f"allocated {peak} bytes for a file of {len(data)}"))
        counts[kind][outcome if outcome in ("rejected", "identical") else "FAILED"] = \
            counts[kind].get(outcome if outcome in ("rejected", "identical") else "FAILED", 0) + 1
        if outcome not in ("rejected", "identical"):
            failures.append((i, kind, outcome))
        if dt > slow_s:
            failures.append((i, kind, f"took {dt:.2f} s"))
        done += 1
        if out is not None and done % 100_000 == 0:
            print(f"{done} cases, {len(failures)} failures, {time.perf_counter() - t_start:.0f} s", file=out)
    return {"counts": counts, "failures": failures, "n": done, "seconds": time.perf_counter() - t_start}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m dnnkit._fuzz", description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=100_000, help="number of cases (default 100000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--memory-every", type=int, default=50, help="measure allocations every k-th case (0: never)")
    a = p.parse_args(argv)
    res = run(a.n, a.seed, memory_every=a.memory_every, out=sys.stdout)
    print(f"{res['n']} cases in {res['seconds']:.1f} s")
    for kind, c in res["counts"].items():
        print(f"  {kind:<11} " + ", ".join(f"{k} {v}" for k, v in sorted(c.items())))
    for f in res["failures"][:50]:
        print("FAILURE", *f)
    return 1 if res["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
