"""dnnkit.plots: every plot writes a non-empty PNG (Agg backend, no display needed)."""
import numpy as np
import pytest

pytest.importorskip("matplotlib")

import dnnkit as dk  # noqa: E402
from dnnkit import datasets, plots  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


def _ok(path):
    with open(path, "rb") as fh:
        head = fh.read(8)
    assert head == PNG
    import os

    assert os.path.getsize(path) > 2000


@pytest.fixture(scope="module")
def trained():
    X, Y, Xd, Yd = datasets.football(m=(120, 80), seed=0)
    net = dk.Network([2, 8, 3, 1])
    net.initialize("he", rng=0)
    h = net.fit(X, Y, epochs=300, learning_rate=0.3, validation=(Xd, Yd), seed=0, log_every=10)
    return net, h, X, Y


def test_cost_curves(tmp_path, trained):
    _, h, _, _ = trained
    _ok(plots.cost_curves(h, path=tmp_path / "c.png"))
    _ok(plots.cost_curves({"a": h, "b": h}, path=tmp_path / "c2.png", log=True))


def test_decision_boundary_and_panels(tmp_path, trained):
    net, _, X, Y = trained
    _ok(plots.decision_boundary(net, X, Y, path=tmp_path / "b.png"))
    _ok(plots.decision_boundaries({"one": net, "two": net}, X, Y, path=tmp_path / "bb.png", suptitle="t"))
    with pytest.raises(ValueError, match="2-D"):
        plots.decision_boundary(net, np.zeros((3, 4)), np.zeros((1, 4)))


def test_decision_boundary_multiclass_and_normalizer(tmp_path):
    X, Y = datasets.blobs(m=90, seed=0)
    s = dk.data.Standardizer().fit(X)
    net = dk.Network([2, 6, 3], output="softmax")
    net.initialize("he", rng=0)
    net.fit(s.transform(X), Y, epochs=50, learning_rate=0.1, seed=0)
    net.normalizer = s
    _ok(plots.decision_boundary(net, X, Y, path=tmp_path / "m.png"))


def test_gradient_norms(tmp_path, trained):
    _, h, _, _ = trained
    _ok(plots.gradient_norms(h, path=tmp_path / "g.png"))


def test_init_comparison_and_propagation(tmp_path, trained):
    _, h, _, _ = trained
    rows = [{"init": "a", "train acc": 0.5, "test acc": 0.5}, {"init": "b", "train acc": 0.9, "test acc": 0.8}]
    _ok(plots.init_comparison({"a": h, "b": h}, rows, path=tmp_path / "i.png"))
    reps = {c: dk.diagnose.propagation(depth=10, width=2, weights=c, m=10) for c in (1.5, 0.5)}
    _ok(plots.propagation(reps, path=tmp_path / "p.png"))


def test_gradcheck_report_plot(tmp_path, trained):
    net, _, X, Y = trained
    rep = dk.gradcheck(net, X[:, :16], Y[:, :16])
    _ok(plots.gradcheck_report(rep, path=tmp_path / "sub" / "r.png"))


def test_returns_figure_without_path(trained):
    import matplotlib.pyplot as plt

    _, h, _, _ = trained
    fig = plots.cost_curves(h)
    assert fig.axes and fig.axes[0].get_ylabel() == "cost J"
    plt.close(fig)
