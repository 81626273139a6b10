"""Saving and loading networks: a documented, versioned file format that never executes code.

Format "dnnkit-model", version 1
--------------------------------
An uncompressed ZIP archive as written by ``numpy.savez`` (so ``numpy.load(path, allow_pickle=False)`` can
read it too), with exactly two members:

``theta.npy``
    the flat parameter vector (W1, b1, W2, b2, ... each in C order; W[l] is (n[l], n[l-1]), b[l] is (n[l],)),
    1-D, dtype float64 or float32 (the network's dtype), little- or big-endian as NumPy wrote it.
``header.npy``
    a 0-d unicode array holding one JSON object::

        {"format": "dnnkit-model", "version": 1,
         "layer_dims": [n_x, n_1, ..., n_L], "hidden": "relu", "output": "sigmoid", "loss": "bce",
         "alpha": 0.01, "dtype": "float64", "n_params": N,
         "normalizer": null | {"type": "Standardizer", "state": {...Standardizer.to_dict()...}},
         "training_config": null | {...the fit arguments and outcome, see dnnkit.training...},
         "dnnkit_version": "0.1.0"}

Numbers in JSON are written with Python's shortest round-trip repr, so they come back exactly.
``save`` writes to a temporary file in the target's directory and renames it over the target
(``os.replace``, atomic on POSIX and Windows): a reader never sees a half-written model, and a failed save
leaves any previous file untouched and no temporary behind. ``load`` uses ``allow_pickle=False``, checks
every field, and raises :class:`ModelFileError` (a ``ValueError``) naming the problem for anything that is
not a valid version-1 model: not a ZIP, truncated, foreign members, bad JSON, unknown version, sizes that
do not match the architecture, NaN or Inf parameters, an unknown normalizer.
"""
from __future__ import annotations

import contextlib
import json
import numbers
import os
import tempfile
import zipfile

import numpy as np

from ._params import n_params as count_params
from ._validation import MAX_LAYER_UNITS
from .data import Standardizer
from .network import Network

__all__ = ["ModelFileError", "save", "load", "FORMAT", "VERSION"]

FORMAT = "dnnkit-model"
VERSION = 1
_MEMBERS = {"header.npy", "theta.npy"}


class ModelFileError(ValueError):
    """The file is not a valid dnnkit model (corrupt, truncated, foreign, or from an unknown version)."""


def _normalizer_registry() -> dict:
    return {"Standardizer": Standardizer}


# ------------------------------------------------------------------------------------------------- save

def _header(net) -> str:
    norm = None
    if getattr(net, "normalizer", None) is not None:
        reg = _normalizer_registry()
        name = type(net.normalizer).__name__
        if reg.get(name) is not type(net.normalizer):
            raise TypeError(f"cannot save a normalizer of type {type(net.normalizer).__name__}; "
                            f"supported: {', '.join(reg)}")
        norm = {"type": name, "state": net.normalizer.to_dict()}
    try:
        from . import __version__ as version
    except ImportError:  # pragma: no cover
        version = "unknown"
    h = {
        "format": FORMAT, "version": VERSION,
        "layer_dims": [int(d) for d in net.layer_dims], "hidden": net.hidden, "output": net.output,
        "loss": net.loss, "alpha": float(net.alpha), "dtype": net.dtype.name, "n_params": int(net.n_params),
        "normalizer": norm, "training_config": getattr(net, "training_config", None),
        "dnnkit_version": version,
    }
    try:
        return json.dumps(h, allow_nan=False, sort_keys=True)
    except (TypeError, ValueError) as e:
        raise ValueError(f"the model header cannot be written as JSON: {e}") from e


def save(net, path) -> None:
    """Write ``net`` (architecture, parameters, normalizer, training config) to ``path`` atomically."""
    if not isinstance(net, Network):
        raise TypeError(f"net must be a dnnkit.Network, got {type(net).__name__}")
    path = os.fspath(path)
    if not isinstance(path, str):
        path = os.fsdecode(path)
    if not path or path.endswith(("/", os.sep)) or os.path.isdir(path):
        # '' would put the temporary file in the parent of the working directory (abspath('') is the cwd)
        raise ValueError(f"path must name a file, got {path!r}")
    header = _header(net)  # everything that can fail on the network's side fails before touching the disk
    if not np.isfinite(net.theta).all():
        raise ValueError("the network's parameters contain NaN or Inf; refusing to save them")
    theta = np.array(net.theta, copy=True)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            # a file object (not a name): numpy then adds no ".npz" suffix
            np.savez(f, header=np.array(header), theta=theta)
            f.flush()
            os.fsync(f.fileno())
        try:
            mode = os.stat(path).st_mode & 0o7777  # keep an existing file's permissions
        except FileNotFoundError:
            mode = 0o644
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


# ------------------------------------------------------------------------------------------------- load

def _fail(path, msg) -> ModelFileError:
    return ModelFileError(f"{path}: {msg}")


_MAX_HEADER_BYTES = 1 << 24  # the JSON header of a real model is a few kB; a bigger member is not one


def _npy_shape(z, path, member):
    """(shape, dtype) declared by a member's .npy header, read without loading its data: a small file can
    declare an enormous array (or a compressed member can inflate to one), and ``np.load`` would allocate it
    before reading a byte."""
    fmt = np.lib.format
    try:
        with z.zip.open(member + ".npy") as f:
            version = fmt.read_magic(f)
            read = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}.get(version)
            if read is None:
                raise ValueError(f"unsupported .npy version {version}")
            shape, _, dtype = read(f)
    except Exception as e:  # noqa: BLE001 - whatever the parser of hostile bytes raises (zlib, struct, ...)
        raise _fail(path, f"corrupt member {member!r} ({type(e).__name__}: {str(e)[:200]})") from None
    if dtype.hasobject:
        raise _fail(path, "contains pickled data; dnnkit model files never do, and it is not loaded")
    return shape, dtype


def _member(z, path, member):
    try:
        return z[member]
    except ValueError as e:
        if "pickle" in str(e).lower():
            raise _fail(path, "contains pickled data; dnnkit model files never do, and it is not loaded") from None
        raise _fail(path, f"corrupt member ({e})") from None
    except Exception as e:  # noqa: BLE001 - BadZipFile, EOFError, zlib.error, NotImplementedError, ...
        raise _fail(path, f"corrupt or truncated ({type(e).__name__}: {str(e)[:200]})") from None


def _check_storage(z, f, path):
    """Members stored as ``numpy.savez`` stores them: uncompressed (so nothing inflates beyond the file: no zip
    bombs), each name once, and each member's bytes inside the file — checked from the ZIP directory, before any
    member is read or anything is allocated for it."""
    f.seek(0, os.SEEK_END)
    size = f.tell()
    infos = z.zip.infolist()
    names = [i.filename for i in infos]
    if len(set(names)) != len(names):
        raise _fail(path, "not a dnnkit model archive; a member name appears twice")
    for i in infos:
        if i.compress_type != zipfile.ZIP_STORED:
            raise _fail(path, f"member {i.filename!r} is compressed; dnnkit model files are stored uncompressed "
                              "(as numpy.savez writes them), so that nothing inflates beyond the file's size")
        if i.file_size != i.compress_size or i.header_offset + i.compress_size > size:
            raise _fail(path, f"corrupt or truncated (member {i.filename!r} declares {i.file_size} bytes, "
                              f"the file has {size})")


def _read(f, path):
    """The NpzFile of an open model file, with exactly the two members (their data not loaded yet)."""
    try:
        z = np.load(f, allow_pickle=False)
    except ValueError as e:
        f.seek(0)
        if "pickle" in str(e).lower() and f.read(1) == b"\x80":  # numpy calls anything unknown a pickle
            raise _fail(path, "contains pickled data; dnnkit model files never do, and it is not loaded") from None
        if "pickle" in str(e).lower():
            raise _fail(path, "not a dnnkit model (neither a ZIP archive nor a .npy file)") from None
        raise _fail(path, f"corrupt or not a dnnkit model ({e})") from None
    except Exception as e:  # noqa: BLE001 - BadZipFile, EOFError, struct.error, UnicodeDecodeError, ...
        raise _fail(path, f"corrupt or truncated ({type(e).__name__}: {str(e)[:200]})") from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise _fail(path, "not a dnnkit model (a single .npy array, not a model archive)")
    try:
        _check_storage(z, f, path)
    except BaseException:
        z.close()
        raise
    want = {n[:-4] for n in _MEMBERS}
    names = set(z.files)
    if names != want:
        z.close()
        missing, extra = sorted(want - names), sorted(names - want)
        raise _fail(path, "not a dnnkit model archive" + (f"; missing {missing}" if missing else "")
                    + (f"; unexpected {extra}" if extra else ""))
    return z


def _read_header(z, path) -> dict:
    shape, dtype = _npy_shape(z, path, "header")
    if shape != () or dtype.kind != "U" or dtype.itemsize > _MAX_HEADER_BYTES:
        raise _fail(path, "the header is not a JSON string")
    header = _member(z, path, "header")
    try:
        h = json.loads(str(header[()]), parse_constant=_reject_constant)
    except (ValueError, RecursionError) as e:  # RecursionError: a maliciously deep nesting
        raise _fail(path, f"the header is not valid JSON ({type(e).__name__}: {str(e)[:100]})") from None
    if not isinstance(h, dict):
        raise _fail(path, "the header is not a JSON object")
    return h


def _reject_constant(name):
    raise ValueError(f"{name} is not allowed")


def _field(h, key, kind, path):
    if key not in h:
        raise _fail(path, f"header is missing {key!r}")
    v = h[key]
    if kind is int:
        ok = isinstance(v, int) and not isinstance(v, bool)
    elif kind is float:
        ok = isinstance(v, numbers.Real) and not isinstance(v, bool)
    else:
        ok = isinstance(v, kind)
    if not ok:
        raise _fail(path, f"header field {key!r} has the wrong type ({type(v).__name__})")
    return v


def _network_from_header(h, path):
    if h.get("format") != FORMAT:
        raise _fail(path, f"not a dnnkit model (format {str(h.get('format'))[:80]!r})")
    version = _field(h, "version", int, path)
    if version != VERSION:
        newer = " (written by a newer dnnkit; upgrade to read it)" if version > VERSION else ""
        raise _fail(path, f"unsupported model file version {version}; this dnnkit reads version {VERSION}{newer}")
    dims = _field(h, "layer_dims", list, path)
    if len(dims) < 2 or not all(isinstance(d, int) and not isinstance(d, bool) and 1 <= d <= MAX_LAYER_UNITS
                                for d in dims):
        raise _fail(path, f"layer_dims must list at least two sizes in [1, {MAX_LAYER_UNITS}], got {str(dims)[:80]}")
    hidden, output, loss = (_field(h, k, str, path) for k in ("hidden", "output", "loss"))
    alpha = _field(h, "alpha", float, path)
    dtype = _field(h, "dtype", str, path)
    if dtype not in ("float64", "float32"):
        raise _fail(path, f"dtype must be float64 or float32, got {dtype[:40]!r}")
    n_params = _field(h, "n_params", int, path)
    need = count_params(dims)  # before any allocation: a header can name an absurd architecture
    if n_params != need:
        raise _fail(path, f"n_params is {n_params} but layer_dims {str(dims)[:80]} need {need}")

    def build():
        try:
            return Network(dims, hidden=hidden, output=output, loss=loss, dtype=dtype, alpha=alpha)
        except (TypeError, ValueError, MemoryError) as e:
            raise _fail(path, f"invalid architecture ({type(e).__name__}: {e})") from None
    return build, need, dims, dtype


def load(path) -> Network:
    """Read a model written by :func:`save` from a path or a binary file object (``io.BytesIO``, an open file);
    raises :class:`ModelFileError` for anything else."""
    if hasattr(path, "read") and hasattr(path, "seek"):
        return _load(contextlib.nullcontext(path), getattr(path, "name", "<file object>"))
    path = os.fspath(path)
    # The file is opened here (not by np.load), so that it is closed whatever np.load does on a bad file.
    return _load(open(path, "rb"), path)


def _load(opened, path):
    with opened as f:
        with _read(f, path) as z:
            h = _read_header(z, path)
            build, need, dims, dtype = _network_from_header(h, path)
            # the parameter member is checked against the architecture before its data is read and before the
            # network is allocated
            shape, tdtype = _npy_shape(z, path, "theta")
            if len(shape) != 1 or tdtype.kind != "f" or tdtype.itemsize != np.dtype(dtype).itemsize:
                raise _fail(path, f"theta must be a 1-D {dtype} array, got {tdtype} with shape {shape}")
            if shape[0] != need:
                raise _fail(path, f"theta has {shape[0]} values, the architecture needs {need}")
            info = z.zip.getinfo("theta.npy")
            if info.file_size < need * tdtype.itemsize:  # the data must be in the file before we allocate for it
                raise _fail(path, f"theta is truncated: {need} values need {need * tdtype.itemsize} bytes, the "
                                  f"member holds {info.file_size}")
            net = build()
            theta = _member(z, path, "theta")
    if theta.shape != (net.n_params,):  # pragma: no cover - the declared shape was checked above
        raise _fail(path, f"theta has shape {theta.shape}, the architecture needs ({net.n_params},)")
    if not np.isfinite(theta).all():
        raise _fail(path, "theta contains NaN or Inf")
    net.theta = theta.astype(net.dtype, copy=False)  # byte order normalized; values exact

    norm = h.get("normalizer")
    if norm is not None:
        reg = _normalizer_registry()
        if not isinstance(norm, dict) or norm.get("type") not in reg or not isinstance(norm.get("state"), dict):
            raise _fail(path, f"unknown or malformed normalizer {str(norm)[:80]!r}")
        try:
            net.normalizer = reg[norm["type"]].from_dict(norm["state"])
        except Exception as e:  # noqa: BLE001 - a hostile state may break the normalizer in any way
            raise _fail(path, f"invalid normalizer state ({type(e).__name__}: {str(e)[:200]})") from None
        nf = getattr(net.normalizer, "n_features", None)
        if isinstance(nf, int) and nf != dims[0]:
            raise _fail(path, f"the normalizer has {nf} features, the network {dims[0]} inputs")
    if not isinstance(h.get("dnnkit_version", ""), str):
        raise _fail(path, "header field 'dnnkit_version' has the wrong type")
    cfg = h.get("training_config")
    if cfg is not None and not isinstance(cfg, dict):
        raise _fail(path, "training_config must be an object or null")
    if cfg is not None:
        net.training_config = cfg
    return net
