"""HTML for Jupyter: the ``_repr_html_`` of dnnkit's result objects, all in one place.

Each class keeps a one-line ``_repr_html_`` that calls the matching function here. Every string that comes
from the user or the data (names, findings, notes, config values) is escaped; numbers are formatted like the
plain-text ``__str__`` of the same object. No JavaScript, no external CSS: the output renders the same in
Jupyter, VS Code and on GitHub's notebook viewer.
"""
from __future__ import annotations

import base64
import io
import math
from html import escape
from typing import Any, Iterable, Sequence

VERDICT_COLOURS = {
    "correct": "#1a7f37", "stable": "#1a7f37", "ok": "#1a7f37", "low bias, low variance": "#1a7f37",
    "check": "#9a6700", "unverified": "#9a6700",
    "bug": "#cf222e", "exploding": "#cf222e", "vanishing": "#cf222e",
}
_TABLE = "border-collapse:collapse;font-family:monospace;font-size:12px;margin:4px 0"
_CELL = "border:1px solid #d0d7de;padding:2px 6px;text-align:left"


def _colour(verdict: str) -> str:
    v = str(verdict)
    if v in VERDICT_COLOURS:
        return VERDICT_COLOURS[v]
    return "#cf222e" if "high" in v else "#57606a"


def verdict_badge(verdict: Any) -> str:
    """The verdict in bold, coloured (green correct/stable, amber check/unverified, red bug/high/...)."""
    v = str(verdict)
    return f'<b class="dnnkit-verdict" style="color:{_colour(v)}">{escape(v)}</b>'


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            return str(v)
        return f"{v:.4g}" if 1e-3 <= abs(v) < 1e5 or v == 0 else f"{v:.3e}"
    return str(v)


def table(header: Sequence[str], rows: Iterable[Sequence[Any]], raw_columns: Iterable[int] = ()) -> str:
    """An HTML table; cells are escaped except those in raw_columns (already HTML, built here)."""
    raw = set(raw_columns)
    head = "".join(f'<th style="{_CELL}">{escape(str(h))}</th>' for h in header)
    body = []
    for r in rows:
        cells = "".join(f'<td style="{_CELL}">{c if i in raw else escape(_fmt(c))}</td>' for i, c in enumerate(r))
        body.append(f"<tr>{cells}</tr>")
    return f'<table style="{_TABLE}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _block(title: str, *parts: str, cls: str) -> str:
    return f'<div class="{cls}"><div><b>{escape(title)}</b></div>{"".join(parts)}</div>'


def _p(text: str) -> str:
    return f'<div style="margin:2px 0">{text}</div>'


# ------------------------------------------------------------------------------------------ gradcheck

def gradcheck_report(r: Any) -> str:
    from .gradient_check import BUG_FROM, CORRECT_BELOW

    what = "directions" if r.mode == "directional" else "coordinates"
    head = _p(f"{escape(str(r.mode))} check, {escape(str(r.engine))} engine, eps={r.eps:g}: {r.n_checked} {what}, "
              f"{r.n_kinks} unreliable (kinks)")
    verdict = _p(f"difference = {float(r):.8g} &rarr; {verdict_badge(r.verdict)} "
                 f"<span style=\"color:#57606a\">(correct &lt; {CORRECT_BELOW:g}, bug &ge; {BUG_FROM:g})</span>")
    extra = ""
    if r.n_kinks:
        extra = _p(f"without the {r.n_kinks} kink-crossing coordinates; with them: {r.difference:.8g}")
    rows = []
    for c in r.components:
        rows.append([escape(c.name), "x".join(str(s) for s in c.shape), c.n_checked, c.n_kinks,
                     f"{c.difference:.3e}", f"{c.max_abs_error:.2e}",
                     "-" if c.worst_index is None else str(tuple(c.worst_index)),
                     verdict_badge(c.verdict), escape(str(c.finding))])
    tab = table(["component", "shape", "checked", "kinks", "difference", "max|a-g|", "worst (l,r,c)", "verdict",
                 "finding"], rows, raw_columns=(0, 7, 8))
    findings = [c for c in r.components if c.verdict != "correct" and c.finding and c.finding != "ok"]
    flist = ""
    if findings:
        items = "".join(f"<li><b>{escape(c.name)}</b>: {escape(str(c.finding))}</li>" for c in findings)
        flist = f'<div>findings:</div><ul style="margin:2px 0">{items}</ul>'
    return _block("Gradient check", head, verdict, extra, tab, flist, cls="dnnkit-gradcheck")


def taylor_report(t: Any) -> str:
    """dk.taylor_test's report: per component the observed remainder order (~2 correct, ~1 wrong)."""
    from .taylor import RATE_BUG_BELOW, RATE_CORRECT_ABOVE

    rows = []
    for c in t.components:
        rate = "nan" if math.isnan(c.rate) else f"{c.rate:.2f}"
        rows.append([escape(str(c.name)), "x".join(str(s) for s in c.shape), rate, verdict_badge(c.verdict),
                     escape(str(c.reason))])
    tab = table(["component", "shape", "rate", "verdict", "why"], rows, raw_columns=(0, 3, 4))
    verdict = _p(f"verdict: {verdict_badge(t.verdict)} <span style=\"color:#57606a\">(rate &gt; "
                 f"{RATE_CORRECT_ABOVE:g}: correct, &lt; {RATE_BUG_BELOW:g}: bug; a wrong gradient converges at "
                 f"rate 1)</span>")
    return _block("Taylor test", verdict, tab, cls="dnnkit-taylor")


# ------------------------------------------------------------------------------------------ training

def _cost_curve_png(h: Any) -> str | None:
    """A small inline cost curve (base64 PNG) where matplotlib is installed, else None."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        from matplotlib.figure import Figure
    except ImportError:
        return None
    if len(h.epoch) < 2:
        return None
    fig = Figure(figsize=(3.6, 2.2), dpi=80)
    ax = fig.add_subplot()
    ax.plot(h.epoch, h.train_cost, label="train")
    if any(not math.isnan(v) for v in h.dev_cost):
        ax.plot(h.epoch, h.dev_cost, label="dev")
    if h.best_epoch is not None:
        ax.axvline(h.best_epoch, color="grey", ls=":", lw=1)
    ax.set_xlabel("epoch", fontsize=8)
    ax.set_ylabel("cost", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def history(h: Any, max_rows: int = 12) -> str:
    n = len(h)
    flags = [k for k in ("stopped_early", "interrupted") if getattr(h, k)]
    summary = f"{n} epochs reported; best_epoch={h.best_epoch}" + "".join(f"; {k}" for k in flags)
    idx = list(range(n))
    if n > max_rows:  # first and last rows, like pandas
        half = max_rows // 2
        idx = idx[:half] + [-1] + idx[-half:]
    rows = []
    for i in idx:
        if i == -1:
            rows.append(["..."] * 6)
            continue
        rows.append([h.epoch[i], h.train_cost[i], h.train_error[i], h.dev_cost[i], h.dev_error[i], h.time[i]])
    tab = table(["epoch", "train_cost", "train_error", "dev_cost", "dev_error", "time (s)"], rows)
    png = _cost_curve_png(h)
    img = ("" if png is None else
           f'<img class="dnnkit-cost-curve" alt="cost curve" src="data:image/png;base64,{png}"/>')
    checks = ""
    if h.gradchecks:
        checks = "<div>gradient checks:</div>" + table(
            ["epoch", "difference", "verdict"],
            [[g["epoch"], f"{g['difference']:.3e}", verdict_badge(g["verdict"])] for g in h.gradchecks],
            raw_columns=(2,))
    layout = (f'<div style="display:flex;gap:12px;align-items:flex-start"><div>{tab}</div>'
              f'<div>{img}</div></div>')
    return _block("History", _p(escape(summary)), layout, checks, cls="dnnkit-history")


# ------------------------------------------------------------------------------------------ diagnosis

def diagnosis(d: Any) -> str:
    tb, tv = d.tolerance

    def pct(v: float) -> str:
        return f"{100 * v:.2f}%"

    rows = [["train error", pct(d.train_error), ""], ["dev error", pct(d.dev_error), ""],
            ["Bayes error", pct(d.bayes_error), ""],
            ["avoidable bias (train - Bayes)", pct(d.avoidable_bias),
             verdict_badge("high bias" if d.high_bias else "ok") + f" (high when &gt; {pct(tb)})"],
            ["variance (dev - train)", pct(d.variance),
             verdict_badge("high variance" if d.high_variance else "ok") + f" (high when &gt; {pct(tv)})"]]
    tab = table(["", "value", "judged"], rows, raw_columns=(2,))
    rec = ""
    if d.recommendations:
        rec = ("<div>next steps (the basic recipe):</div><ul style=\"margin:2px 0\">"
               + "".join(f"<li>{escape(str(x))}</li>" for x in d.recommendations) + "</ul>")
    notes = "".join(_p("note: " + escape(str(n))) for n in d.notes)
    return _block("Bias / variance", tab, _p("verdict: " + verdict_badge(d.verdict)), rec, notes,
                  cls="dnnkit-diagnosis")


def propagation(p: Any) -> str:
    rows = []
    for l, n in enumerate(p.layer_dims):
        rows.append([l, n, f"{p.activation_scale[l]:.4g}", f"{p.dA_scale[l]:.4g}",
                     f"{p.gradient_scale[l - 1]:.4g}" if l > 0 else ""])
    tab = table(["layer", "units", "RMS A[l]", "RMS dA[l]", "RMS dW[l]"], rows)
    head = _p(f"layers {escape(str(list(p.layer_dims)))}, activation {escape(str(p.activation))}, "
              f"init {escape(str(p.init))}")
    ratios = _p(f"A[L-1]/A[0] = {p.ratio:.6g}, A[L]/A[0] = {p.output_ratio:.6g}, "
                f"dA[0]/dA[L] = {p.gradient_ratio:.6g}")
    verdict = _p(f"verdict: {verdict_badge(p.verdict)} (exploding above x{p.factor:g}, vanishing below "
                 f"x{1 / p.factor:g}, end to end)")
    return _block("Propagation", head, tab, ratios, verdict, cls="dnnkit-propagation")


# ------------------------------------------------------------------------------------------ network

def network(net: Any) -> str:
    dims = list(net.layer_dims)
    L = len(dims) - 1
    rows = []
    for l in range(1, L + 1):
        act = net.output if l == L else net.hidden
        rows.append([l, f"{dims[l]} x {dims[l - 1]}", f"{dims[l]} x 1", escape(str(act)),
                     dims[l] * dims[l - 1] + dims[l]])
    tab = table(["layer", "W", "b", "activation", "parameters"], rows, raw_columns=(3,))
    norm = getattr(net, "normalizer", None)
    if norm is None:
        norm_text = "none"
    else:
        n = getattr(norm, "n_features", None)
        norm_text = escape(type(norm).__name__) + ("" if n is None else f" ({n} features)")
    head = _p(f"layers {escape(str(dims))}; hidden {escape(str(net.hidden))}, output {escape(str(net.output))}, "
              f"loss {escape(str(net.loss))}")
    info = _p(f"{net.n_params:,} parameters, dtype {escape(net.dtype.name)}, normalizer {norm_text}")
    return _block("Network", head, info, tab, cls="dnnkit-network")
