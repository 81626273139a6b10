"""Persistence: save -> load round trips exactly; bad files raise ModelFileError; saves are atomic."""
import json
import os
import pickle
import zipfile

import numpy as np
import pytest

import dnnkit as dk
from dnnkit.io import ModelFileError, load, save


def trained(dtype="float64", normalizer=True):
    g = np.random.default_rng(0)
    X = g.standard_normal((4, 60)) * 3 + 1
    Y = (X[:1] > 1).astype(float)
    net = dk.Network([4, 7, 3, 1], hidden="leaky_relu", alpha=0.02, dtype=dtype).initialize("he", rng=1)
    if normalizer:
        from dnnkit.data import Standardizer

        net.normalizer = Standardizer().fit(X)
    net.fit(X, Y, epochs=5, learning_rate=0.1, batch_size=16, optimizer="adam", l2=0.1, keep_prob=0.9, seed=4)
    return net, X


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_round_trip_is_exact(tmp_path, dtype):
    net, X = trained(dtype)
    p = tmp_path / "model.dnn"
    net.save(p)
    assert sorted(os.listdir(tmp_path)) == ["model.dnn"]  # no ".npz" added, no temporary left
    back = dk.Network.load(p)
    assert back.theta.dtype == net.theta.dtype
    assert back.theta.tobytes() == net.theta.tobytes()
    assert back.layer_dims == net.layer_dims
    assert (back.hidden, back.output, back.loss, back.alpha) == (net.hidden, net.output, net.loss, net.alpha)
    assert back.normalizer.to_dict() == net.normalizer.to_dict()
    assert back.training_config == net.training_config
    assert back.training_config["optimizer"] == "adam" and back.training_config["seed"] == 4
    np.testing.assert_array_equal(back.predict_proba(X), net.predict_proba(X))
    # params views of the loaded net point into its buffer
    back.params["W1"][0, 0] = 5.0
    assert back.theta[0] == 5.0


def test_round_trip_without_normalizer_or_training(tmp_path):
    net = dk.Network([3, 2], output="softmax").initialize("glorot", rng=0)
    save(net, str(tmp_path / "m"))
    back = load(str(tmp_path / "m"))
    assert back.normalizer is None and not hasattr(back, "training_config")
    assert back.theta.tobytes() == net.theta.tobytes()


def test_file_is_a_plain_npz_with_a_json_header(tmp_path):
    net, _ = trained()
    net.save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz", allow_pickle=False) as z:
        h = json.loads(str(z["header"][()]))
        assert h["format"] == "dnnkit-model" and h["version"] == 1
        assert h["layer_dims"] == [4, 7, 3, 1] and h["normalizer"]["type"] == "Standardizer"
        assert z["theta"].tobytes() == net.theta.tobytes()


def _rewrite(path, header=None, theta=None, **extra):
    with np.load(path, allow_pickle=False) as z:
        h, t = json.loads(str(z["header"][()])), z["theta"]
    if header is not None:
        header(h)
    arrays = {"header": np.array(json.dumps(h)), "theta": t if theta is None else theta(t)}
    arrays.update(extra)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def _set(key, value):
    def f(h):
        h[key] = value
    return f


def _del(key):
    def f(h):
        del h[key]
    return f


BAD = {
    "wrong-version": dict(header=_set("version", 2)),
    "version-not-int": dict(header=_set("version", "1")),
    "foreign-format": dict(header=_set("format", "keras")),
    "missing-dims": dict(header=_del("layer_dims")),
    "bad-dims": dict(header=_set("layer_dims", [4, 0, 1])),
    "bad-activation": dict(header=_set("hidden", "swish")),
    "bad-dtype": dict(header=_set("dtype", "int8")),
    "n_params-mismatch": dict(header=_set("n_params", 3)),
    "theta-too-short": dict(theta=lambda t: t[:-1]),
    "theta-2d": dict(theta=lambda t: t.reshape(1, -1)),
    "theta-int": dict(theta=lambda t: t.astype(np.int64)),
    "theta-nan": dict(theta=lambda t: np.where(np.arange(t.size) == 3, np.nan, t)),
    "bad-normalizer": dict(header=_set("normalizer", {"type": "os.system", "state": {}})),
    "normalizer-wrong-size": dict(header=lambda h: h["normalizer"]["state"].update(mean=[0.0], std=[1.0],
                                                                                   zero_variance=[False])),
    "extra-member": dict(extra=np.zeros(3)),
    "missing-theta": dict(theta=lambda t: None),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_fields_raise_model_file_error(tmp_path, case):
    net, _ = trained()
    p = tmp_path / "m"
    net.save(p)
    _rewrite(p, **BAD[case])
    with pytest.raises(ModelFileError):
        load(p)


def test_header_not_json_and_not_a_string(tmp_path):
    net, _ = trained()
    p = tmp_path / "m"
    for header in (np.array("{not json"), np.array(3.0), np.array("[1, 2]"), np.array('{"version": NaN}')):
        with open(p, "wb") as f:
            np.savez(f, header=header, theta=net.theta)
        with pytest.raises(ModelFileError):
            load(p)


def _npz(path, members):
    """A ZIP with the given raw member bytes (to write what numpy.savez never would)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)


def _npy_bytes(arr=None, header=None, payload=b""):
    import io

    buf = io.BytesIO()
    if arr is not None:
        np.save(buf, arr)
    else:
        np.lib.format.write_array_header_1_0(buf, header)
        buf.write(payload)
    return buf.getvalue()


def test_malicious_files_raise_before_allocating(tmp_path):
    # each of these raised MemoryError (or RecursionError) instead of ModelFileError, some after inflating
    # hundreds of MB: the architecture and the declared member shapes are now checked before any allocation
    net, _ = trained(normalizer=False)
    p = tmp_path / "m"
    net.save(p)
    with np.load(p, allow_pickle=False) as z:
        h = json.loads(str(z["header"][()]))
    good_header = _npy_bytes(np.array(json.dumps(h)))
    huge = {"descr": "<f8", "fortran_order": False, "shape": (10**11,)}  # 745 GiB declared in a tiny file
    cases = {
        "huge-theta-shape": {"header.npy": good_header, "theta.npy": _npy_bytes(header=huge, payload=b"\0" * 64)},
        "inflating-theta": {"header.npy": good_header, "theta.npy": _npy_bytes(
            header=dict(huge, shape=(10**7,)), payload=bytes(8 * 10**7))},  # 80 MB from ~80 kB
        "huge-header-shape": {"header.npy": _npy_bytes(header={"descr": "<U10", "fortran_order": False,
                                                               "shape": (10**11,)}),
                              "theta.npy": _npy_bytes(net.theta)},
        "deep-json": {"header.npy": _npy_bytes(np.array("[" * 100000 + "]" * 100000)),
                      "theta.npy": _npy_bytes(net.theta)},
        "huge-architecture": {"header.npy": _npy_bytes(np.array(json.dumps(dict(
            h, layer_dims=[2, 10**9, 10**9], n_params=10**18 + 4 * 10**9)))), "theta.npy": _npy_bytes(net.theta)},
        "dims-beyond-c-int": {"header.npy": _npy_bytes(np.array(json.dumps(dict(
            h, layer_dims=[2, 2**40, 1], n_params=4 * 2**40 + 1)))), "theta.npy": _npy_bytes(net.theta)},
    }
    for name, members in cases.items():
        q = tmp_path / name
        _npz(q, members)
        with pytest.raises(ModelFileError):
            load(q)


def test_normalizer_state_must_be_numbers(tmp_path):
    net, _ = trained()
    p = tmp_path / "m"
    for bad in (dict(mean=["0", "1", "2", "3"]), dict(std=[True] * 4), dict(zero_variance=["a"] * 4),
                dict(zero_variance=[0.5] * 4)):
        net.save(p)
        _rewrite(p, header=lambda h: h["normalizer"]["state"].update(bad))
        with pytest.raises(ModelFileError, match="normalizer"):
            load(p)


def test_truncated_random_and_foreign_files(tmp_path):
    net, _ = trained()
    p = tmp_path / "m"
    net.save(p)
    data = p.read_bytes()
    for cut in (len(data) // 2, len(data) - 10, 30, 0):
        (tmp_path / "t").write_bytes(data[:cut])
        with pytest.raises(ModelFileError):
            load(tmp_path / "t")
    (tmp_path / "r").write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(ModelFileError):
        load(tmp_path / "r")
    np.save(tmp_path / "a.npy", net.theta)
    with pytest.raises(ModelFileError, match="single .npy"):
        load(tmp_path / "a.npy")
    with zipfile.ZipFile(tmp_path / "z.zip", "w") as z:
        z.writestr("hello.txt", "hi")
    with pytest.raises(ModelFileError):
        load(tmp_path / "z.zip")
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "does-not-exist")
    assert issubclass(ModelFileError, ValueError)


class _Evil:
    def __reduce__(self):
        return (open, (os.environ["DNNKIT_TEST_MARKER"], "w"))


def test_a_pickle_is_never_executed(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    monkeypatch.setenv("DNNKIT_TEST_MARKER", str(marker))
    p = tmp_path / "evil.pkl"
    with open(p, "wb") as f:
        pickle.dump({"theta": _Evil()}, f)
    with pytest.raises(ModelFileError, match="pickle"):
        load(p)
    # an object array (pickled) inside an otherwise well-formed archive
    net, _ = trained()
    q = tmp_path / "m"
    net.save(q)
    obj = np.empty(1, dtype=object)
    obj[0] = _Evil()
    _rewrite(q, theta=lambda t: obj)
    with pytest.raises(ModelFileError, match="pickle"):
        load(q)
    assert not marker.exists()


def test_failed_save_leaves_no_partial_file(tmp_path, monkeypatch):
    import dnnkit.io as dio

    net, _ = trained()
    p = tmp_path / "model"
    net.save(p)
    old = p.read_bytes()

    def broken_savez(f, **arrays):
        f.write(b"PK\x03\x04 partial")
        raise OSError("disk full")

    monkeypatch.setattr(dio.np, "savez", broken_savez)
    net.params["W1"][...] += 1.0
    with pytest.raises(OSError, match="disk full"):
        net.save(p)
    assert sorted(os.listdir(tmp_path)) == ["model"]  # no temporary left
    assert p.read_bytes() == old  # the previous model is intact
    with pytest.raises(OSError):
        net.save(tmp_path / "new")
    assert sorted(os.listdir(tmp_path)) == ["model"]


def test_save_validates_before_writing(tmp_path):
    net = dk.Network([2, 1])
    net.normalizer = object()
    with pytest.raises(TypeError, match="normalizer"):
        net.save(tmp_path / "m")
    net.normalizer = None
    net.theta[0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        net.save(tmp_path / "m")
    with pytest.raises(TypeError):
        save("not a net", tmp_path / "m")
    assert os.listdir(tmp_path) == []


def test_save_to_an_empty_or_directory_path_raises_before_writing(tmp_path, monkeypatch):
    # save("") made its temporary file in the PARENT of the working directory before failing
    net = dk.Network([2, 1]).initialize(rng=0)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    (work / "sub").mkdir()
    for bad in ("", "sub", "sub/"):
        with pytest.raises(ValueError, match="must name a file"):
            net.save(bad)
    assert sorted(os.listdir(tmp_path)) == ["work"] and sorted(os.listdir(work)) == ["sub"]
    assert os.listdir(work / "sub") == []
