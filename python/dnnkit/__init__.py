"""dnnkit: the practical side of deep learning on fully-connected nets — initialization, regularization,
input normalization, splits, bias/variance and vanishing/exploding diagnostics, and fast, exact,
diagnosing gradient checking. The hot paths are C++ (OpenMP + OpenBLAS); ``dnnkit.reference`` is the
plain NumPy implementation the native core is tested against."""
from __future__ import annotations

import os as _os

# One thread pool that does not keep spinning: OpenMP workers sleep between dnnkit calls, so that alternating
# dnnkit calls with NumPy (OpenBLAS) calls does not make each pool fight the other. Inside a call they spin
# briefly before they sleep (GOMP_SPINCOUNT, libgomp's count of pause loops: 3000 is ~40 us on the
# Xeon this was measured on, 0.15 ms where a pause is slow): a training step has several barriers and
# one fork/join, and on a 2-core VM each sleep/wake-up costs tens of microseconds (medium net, float32:
# 1.22x faster fit; bench/RESULTS.md, "Issue 11, session 4"). Must be set before libgomp is loaded; a
# user's own OMP_WAIT_POLICY or GOMP_SPINCOUNT wins (with OMP_WAIT_POLICY set, no spin count is added).
if "OMP_WAIT_POLICY" not in _os.environ:
    _os.environ.setdefault("GOMP_SPINCOUNT", "3000")
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _preload_blas() -> None:
    # The extension links libscipy_openblas from the scipy-openblas32 wheel (RPATH $ORIGIN/../scipy_openblas32/lib);
    # loading it here too makes editable and in-tree builds find it with no environment variable.
    import ctypes

    import scipy_openblas32

    lib_dir = scipy_openblas32.get_lib_dir()
    if hasattr(_os, "add_dll_directory"):  # Windows has no RPATH: let the loader search the wheel's folder
        _os.add_dll_directory(lib_dir)
    path = _os.path.join(lib_dir, scipy_openblas32.get_library(fullname=True))
    ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)


_preload_blas()

from importlib import import_module as _import_module  # noqa: E402
from importlib.metadata import PackageNotFoundError as _PNF  # noqa: E402
from importlib.metadata import version as _version  # noqa: E402

from . import _core as _core  # noqa: E402
from ._params import params_to_vector, vector_to_params  # noqa: E402
from ._validation import check_num_threads as _check_num_threads  # noqa: E402
from .init import initialize_parameters  # noqa: E402
from .network import Network, dropout_mask  # noqa: E402

try:
    __version__ = _version("dnnkit")
except _PNF:  # running from a source tree
    __version__ = "0.0.0+src"


def set_num_threads(n: int) -> None:
    """Threads for dnnkit's native work (0 = OpenMP's default). Results are identical for any n."""
    from ._threads import set_process_threads

    set_process_threads(_check_num_threads(n))  # also what calls with n_threads= restore afterwards


def get_num_threads() -> int:
    return int(_core.get_num_threads())


def blas_info() -> dict:
    """Which OpenBLAS kernel dnnkit's BLAS runs (corename) and its threads (always 1: see set_num_threads)."""
    return dict(_core.blas_info())


# Submodules and names loaded on first use (keeps `import dnnkit` fast and lets optional parts stay optional).
_LAZY_MODULES = ("distributed", "sweeps", "reference", "data", "datasets", "diagnose", "plots", "sklearn", "callbacks", "cli")
_LAZY_NAMES = {
    "gradcheck": ("gradient_check", "gradcheck"),
    "assert_gradients_close": ("gradient_check", "assert_gradients_close"),
    "GradcheckReport": ("gradient_check", "GradcheckReport"),
    "EarlyStopping": ("callbacks", "EarlyStopping"),
    "History": ("training", "History"),
    "sweep": ("sweeps", "sweep"),
    "SweepResult": ("sweeps", "SweepResult"),
    "taylor_test": ("taylor", "taylor_test"),
    "TaylorReport": ("taylor", "TaylorReport"),
    "ParameterKeyError": ("_validation", "ParameterKeyError"),
}


def __getattr__(name: str):
    if name in _LAZY_MODULES:
        return _import_module(f".{name}", __name__)
    if name in _LAZY_NAMES:
        mod, attr = _LAZY_NAMES[name]
        return getattr(_import_module(f".{mod}", __name__), attr)
    raise AttributeError(f"module 'dnnkit' has no attribute {name!r}")


__all__ = [
    "Network", "initialize_parameters", "params_to_vector", "vector_to_params", "dropout_mask",
    "set_num_threads", "get_num_threads", "blas_info", "gradcheck", "assert_gradients_close",
    "GradcheckReport", "taylor_test", "TaylorReport", "EarlyStopping", "History", "sweep", "SweepResult",
    "ParameterKeyError", "reference", "data", "datasets", "diagnose", "__version__",
]
