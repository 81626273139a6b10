"""The limits the native core enforces are exported from _core (one source of truth for the Python layer)."""
import pytest

from dnnkit import _core


def test_limits_are_exported():
    assert _core.MAX_LAYER_UNITS == 2**30
    assert _core.MAX_EXAMPLES == 2**30
    assert isinstance(_core.MAX_THREADS, int) and _core.MAX_THREADS >= 1024


def test_layer_limit_is_the_one_enforced():
    with pytest.raises(ValueError, match="2\\^30"):
        _core.MLP64([2, _core.MAX_LAYER_UNITS + 1, 1], "relu", "sigmoid", "bce", 0.01)


def test_thread_limit_is_the_one_enforced():
    before = _core.get_num_threads()
    with pytest.raises(ValueError, match=str(_core.MAX_THREADS)):
        _core.set_num_threads(_core.MAX_THREADS + 1)
    assert _core.get_num_threads() == before
