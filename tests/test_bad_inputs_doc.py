"""docs/bad_inputs.md is a contract: every row's example is run here and must raise the stated exception with
the stated words in its message, and change nothing (the network's parameters, the arrays)."""
import io
import pathlib
import re

import numpy as np
import pytest

import dnnkit as dk
import dnnkit.io

DOC = pathlib.Path(__file__).resolve().parent.parent / "docs" / "bad_inputs.md"
ROW = re.compile(r"^\| (?P<kind>[^|]+) \| `(?P<call>.+)` \| `(?P<exc>[\w.]+)` \| `(?P<words>[^`]+)` \|$")


def rows():
    out = [m.groupdict() for m in map(ROW.match, DOC.read_text(encoding="utf-8").splitlines()) if m]
    return out


def test_the_table_is_there_and_covers_many_kinds():
    rs = rows()
    assert len(rs) >= 50 and len({r["kind"] for r in rs}) == len(rs)
    table_lines = [ln for ln in DOC.read_text(encoding="utf-8").splitlines() if ln.startswith("| ")]
    assert len(table_lines) == len(rs) + 1, "a table row the checker cannot parse"  # + the header


@pytest.mark.parametrize("row", rows(), ids=lambda r: r["kind"])
def test_each_row_raises_what_it_says(row, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    g = np.random.default_rng(0)
    net = dk.Network([2, 3, 1]).initialize("he", rng=0)
    X = g.standard_normal((2, 6))
    Y = (g.random((1, 6)) > 0.5).astype(float)
    net.save("model.npz")
    ns = {"dk": dk, "dnnkit": dnnkit, "np": np, "io": io, "pathlib": pathlib, "net": net, "X": X, "Y": Y}
    exc = eval(row["exc"], ns)
    before = (net.theta.tobytes(), X.tobytes(), Y.tobytes())
    with pytest.raises(exc) as ei:
        eval(row["call"], ns)
    assert type(ei.value) is exc or row["exc"] in ("ValueError", "TypeError", "OSError"), \
        f"{type(ei.value).__name__} is a subclass of {row['exc']}: name the precise class in the table"
    assert row["words"] in str(ei.value), f"{row['words']!r} not in {str(ei.value)!r}"
    assert (net.theta.tobytes(), X.tobytes(), Y.tobytes()) == before
    dk.set_num_threads(0)
