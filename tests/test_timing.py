"""dnnkit._timing, the benchmarks' one timing helper: interleaved rounds, calibrated repetitions, summaries."""
import numpy as np

from dnnkit._timing import compare, measure


def test_alternatives_take_turns_within_each_round():
    calls = []
    ta, tb = compare([lambda: calls.append("a"), lambda: calls.append("b")], rounds=3, number=2, warmup=True)
    assert calls == ["a", "b"] + ["a", "a", "b", "b"] * 3  # warm-up, then per round a's reps then b's
    assert ta.times.shape == (3,) and ta.number == 2 and np.all(ta.times >= 0)


def test_inner_functions_get_the_repetition_count_and_results_are_kept():
    seen = []
    t = measure(lambda n: seen.append(n) or n, rounds=2, number=5, inner=True, warmup=False)
    assert seen == [5, 5] and t.result == 5


def test_calibration_grows_until_a_round_lasts_min_time():
    t = measure(lambda: sum(range(200)), rounds=2, min_time=0.002)
    assert t.number >= 2  # one call takes microseconds
    assert t.best <= t.median <= t.worst
    assert "median" in t.fmt() and "range" in t.fmt() and "2 rounds" in t.fmt()


def test_pause_is_slept_before_each_turn_and_not_timed(monkeypatch):
    import dnnkit._timing as timing

    events = []
    monkeypatch.setattr(timing.time, "sleep", lambda s: events.append(("sleep", s)))
    ta, tb = compare([lambda: events.append("a"), lambda: events.append("b")], rounds=2, number=1, pause=0.3)
    assert events == ["a", "b"] + [("sleep", 0.3), "a", ("sleep", 0.3), "b"] * 2  # none around the warm-up
    ta, = compare([lambda: events.append("c")], rounds=2, number=1)  # default: no pause
    assert ("sleep", 0.3) not in events[10:] and events[10:] == ["c"] * 3
