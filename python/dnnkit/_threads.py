"""Threads per call: ``n_threads=`` on ``fit``, ``gradcheck`` and ``sweep``.

dnnkit's native work reads one process-wide setting (``cpp/dnnkit/parallel.hpp``: 0 means OpenMP's default,
i.e. ``OMP_NUM_THREADS`` or the core count, read by libgomp once when it starts). A call given ``n_threads=k``
sets it to k for its duration and puts the process setting back afterwards, so the count is applied on every
call instead of being whatever the environment said when the process started.

Inside a Dask worker the default is the number of threads Dask gave the worker (``Worker.state.nthreads``):
Dask's nanny starts worker processes with ``OMP_NUM_THREADS=1``, so OpenMP's own default there is one thread
whatever the worker was given. Outside a worker ``n_threads=None`` changes nothing (``dk.set_num_threads``, or
OpenMP's default).

Concurrent calls (several Python threads of one process, e.g. a threaded Dask worker) share the setting: the
first call to enter saves the process setting, the last one to leave restores it, and while several run the
latest request holds (results are bit-identical for any thread count, only the speed is affected).
"""
from __future__ import annotations

import sys
import threading
from contextlib import contextmanager

from . import _core
from ._validation import check_n_threads

_lock = threading.Lock()
_active = 0          # calls inside ``using`` with an explicit count
_process_setting = 0  # what dk.set_num_threads last asked for (0 = OpenMP's default)


def set_process_threads(n: int) -> None:
    """dk.set_num_threads: the setting ``using`` restores; applied at once (also over active calls)."""
    global _process_setting
    with _lock:
        _process_setting = int(n)
        _core.set_num_threads(int(n))


def native_threads() -> int:
    """The thread count dnnkit's native work uses now (the core's setting, or OpenMP's default)."""
    return int(_core.get_num_threads())


def dask_worker_threads() -> int | None:
    """The threads Dask gave the worker running this code, or None outside a Dask worker task."""
    if "distributed" not in sys.modules:  # never import dask just to find out
        return None
    try:
        from distributed import get_worker

        w = get_worker()
    except (ImportError, ValueError, AttributeError):
        return None
    state = getattr(w, "state", None)
    n = getattr(state, "nthreads", None) if state is not None else None
    if n is None:
        n = getattr(w, "nthreads", None)
    return int(n) if n else None


def resolve(n_threads) -> int | None:
    """The thread count a call with ``n_threads`` runs with, or None for "leave the process setting"."""
    if n_threads is not None:
        return check_n_threads(n_threads)
    return dask_worker_threads()


@contextmanager
def using(n_threads):
    """Run the body with ``n_threads`` native threads (see the module doc); yields the count in effect."""
    global _active
    n = resolve(n_threads)
    if n is None:
        yield int(_core.get_num_threads())
        return
    with _lock:
        _active += 1
        _core.set_num_threads(n)
    try:
        yield n
    finally:
        with _lock:
            _active -= 1
            if _active == 0:
                _core.set_num_threads(_process_setting)
