"""Jupyter rendering (_repr_html_): the content of each object's HTML, escaping of user strings."""
from __future__ import annotations

import base64
import re
from html.parser import HTMLParser

import numpy as np
import pytest

import dnnkit as dk
from dnnkit import _html


class _Parse(HTMLParser):
    """Collects text, tags and the rows of every table; fails on unbalanced tags."""

    VOID = {"img", "br", "hr"}

    def __init__(self):
        super().__init__()
        self.stack, self.text, self.rows, self.tags, self.imgs = [], [], [], [], []
        self._row = None

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "img":
            self.imgs.append(dict(attrs))
        if tag not in self.VOID:
            self.stack.append(tag)
        if tag == "tr":
            self._row = []
        if tag in ("td", "th") and self._row is not None:
            self._row.append("")

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "img":
            self.imgs.append(dict(attrs))

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, f"unbalanced </{tag}> in {self.stack}"
        self.stack.pop()
        if tag == "tr":
            self.rows.append(self._row)
            self._row = None

    def handle_data(self, data):
        self.text.append(data)
        if self._row is not None and self._row:
            self._row[-1] += data


def parse(html: str) -> _Parse:
    p = _Parse()
    p.feed(html)
    p.close()
    assert not p.stack, f"unclosed tags {p.stack}"
    return p


def _data(seed=0, n_x=4, m=20):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_x, m))
    Y = (rng.random((1, m)) < 0.5).astype(float)
    return X, Y


def test_gradcheck_report_html_table_verdict_and_findings():
    X, Y = _data()
    net = dk.Network([4, 5, 3, 1], hidden="tanh")
    net.initialize("he", rng=1)
    g = {k: v.copy() for k, v in net.backward(X, Y).items()}
    g["db1"] *= 4  # a planted bug: 4/m instead of 1/m
    r = dk.gradcheck(net, X, Y, grads=g)
    p = parse(r._repr_html_())
    rows = [row for row in p.rows if row and row[0] in ("W1", "b1", "W2", "b2", "W3", "b3")]
    assert [row[0] for row in rows] == ["W1", "b1", "W2", "b2", "W3", "b3"]
    b1 = rows[1]
    assert b1[1] == "5x1" and b1[7] == "bug" and "x4" in b1[8]
    assert float(b1[4]) == pytest.approx(r.components[1].difference, rel=1e-3)
    assert rows[0][7] == "correct"
    # the overall verdict is coloured red, the correct components green
    html = r._repr_html_()
    assert re.search(r'color:#cf222e">bug</b>', html) and re.search(r'color:#1a7f37">correct</b>', html)
    assert "findings:" in html and "<li><b>b1</b>" in html
    assert f"{float(r):.8g}" in html


def test_correct_report_html_has_no_findings_list():
    X, Y = _data(1)
    net = dk.Network([4, 3, 1])
    net.initialize("he", rng=0)
    html = dk.gradcheck(net, X, Y)._repr_html_()
    assert 'color:#1a7f37">correct</b>' in html and "findings:" not in html


def test_network_html_architecture_params_dtype_normalizer():
    net = dk.Network([3, 7, 2], hidden="tanh", output="softmax", dtype="float32")
    p = parse(net._repr_html_())
    text = "".join(p.text)
    assert "44 parameters" in text and "float32" in text and "normalizer none" in text
    assert ["1", "7 x 3", "7 x 1", "tanh", "28"] in p.rows and ["2", "2 x 7", "2 x 1", "softmax", "16"] in p.rows
    X = np.random.default_rng(0).standard_normal((3, 10))
    net.normalizer = dk.data.Standardizer().fit(X)
    assert "Standardizer (3 features)" in "".join(parse(net._repr_html_()).text)


def test_history_html_table_and_inline_cost_curve():
    pytest.importorskip("matplotlib")
    X, Y = _data(2, m=40)
    net = dk.Network([4, 5, 1])
    net.initialize("he", rng=0)
    h = net.fit(X, Y, epochs=30, learning_rate=0.1, seed=0, validation=(X[:, :10], Y[:, :10]))
    p = parse(h._repr_html_())
    head = next(r for r in p.rows if r and r[0] == "epoch")
    assert head[:3] == ["epoch", "train_cost", "train_error"]
    body = [r for r in p.rows if r and r[0] not in ("epoch", "...")]
    assert len(body) == 12 and ["..."] * 6 in p.rows        # 30 rows shown as first 6 + last 6
    assert body[0][0] == str(h.epoch[0]) and body[-1][0] == str(h.epoch[-1])
    assert float(body[-1][1]) == pytest.approx(h.train_cost[-1], rel=1e-3)
    (img,) = p.imgs
    assert img["src"].startswith("data:image/png;base64,")
    png = base64.b64decode(img["src"].split(",", 1)[1])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_history_html_without_matplotlib_has_no_image(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_mpl(name, *a, **k):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError("no matplotlib")
        return real(name, *a, **k)

    X, Y = _data(3, m=30)
    net = dk.Network([4, 3, 1])
    net.initialize("he", rng=0)
    h = net.fit(X, Y, epochs=5, learning_rate=0.1, seed=0)
    monkeypatch.setattr(builtins, "__import__", no_mpl)
    html = h._repr_html_()
    assert "<img" not in html and "5 epochs reported" in html


def test_diagnosis_html():
    d = dk.diagnose.bias_variance(0.15, 0.30, bayes_error=0.01)
    html = d._repr_html_()
    p = parse(html)
    assert ["train error", "15.00%", ""] in p.rows and ["dev error", "30.00%", ""] in p.rows
    assert d.verdict in "".join(p.text)
    assert 'color:#cf222e">high bias</b>' in html and 'color:#cf222e">high variance</b>' in html
    assert d.recommendations and all(rec in "".join(p.text) for rec in d.recommendations)


def test_propagation_html():
    r = dk.diagnose.propagation(depth=10, width=2, activation="linear", weights=1.5)
    p = parse(r._repr_html_())
    text = "".join(p.text)
    assert "exploding" in text and f"{r.ratio:.6g}" in text
    layer_rows = [row for row in p.rows if row and row[0].isdigit()]
    assert len(layer_rows) == r.depth + 1 and layer_rows[0][4] == "" and layer_rows[-1][4] != ""


def test_user_strings_are_escaped():
    html = _html.table(["<h>"], [["<script>alert(1)</script>"]])
    assert "<script>" not in html and "&lt;script&gt;" in html and "&lt;h&gt;" in html
    d = dk.diagnose.bias_variance(0.1, 0.1)
    d.notes = ["<img src=x onerror=alert(1)>"]
    html = d._repr_html_()
    assert "<img" not in html and "&lt;img src=x" in html
    net = dk.Network([2, 1])
    net.normalizer = type("<b>Evil</b>", (), {})()
    assert "<b>Evil</b>" not in net._repr_html_()


def test_taylor_report_html():
    X, Y = _data(4)
    net = dk.Network([4, 5, 1], hidden="tanh")
    net.initialize("he", rng=0)
    g = {k: v.copy() for k, v in net.backward(X, Y).items()}
    g["dW1"] *= 2
    t = dk.taylor_test(net, X, Y, grads=g)
    html = t._repr_html_()
    p = parse(html)
    rows = {r[0]: r for r in p.rows if r and r[0] in ("W1", "b1", "W2", "b2")}
    assert set(rows) == {"W1", "b1", "W2", "b2"}
    assert rows["W1"][3] == t.components[0].verdict == "bug"
    assert rows["W1"][2] == f"{t.components[0].rate:.2f}" and rows["W1"][4] == t.components[0].reason
    assert rows["b1"][3] == "correct"
    assert 'color:#cf222e">bug</b>' in html and 'color:#1a7f37">correct</b>' in html
