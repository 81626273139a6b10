"""Sphinx configuration of dnnkit's reference documentation (dev/docs.sh builds it; warnings are errors).

The reference is generated from the docstrings (autodoc + numpydoc); the prose pages are MyST Markdown.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# document the dnnkit that is importable: the installed one, or the source tree (dev/build.sh puts _core there)
try:
    import dnnkit  # noqa: F401
except ImportError:
    sys.path.insert(0, str(HERE.parent / "python"))
    import dnnkit  # noqa: F401

project = "dnnkit"
author = "the dnnkit authors"
release = dnnkit.__version__
version = release

extensions = ["sphinx.ext.autodoc", "numpydoc", "myst_parser", "sphinx.ext.intersphinx"]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "_generated/*.txt"]
myst_enable_extensions = ["colon_fence"]
myst_heading_anchors = 3
autodoc_member_order = "bysource"
autodoc_typehints = "none"           # the signatures show the defaults; numpydoc renders the prose
numpydoc_show_class_members = False  # members are listed explicitly by the pages
numpydoc_validation_checks: set = set()
html_theme = "alabaster"
html_static_path: list = []
intersphinx_mapping: dict = {}
nitpicky = False

# The CLI page shows the real --help of each subcommand, generated at build time
_gen = HERE / "_generated"
_gen.mkdir(exist_ok=True)
_src = os.path.dirname(os.path.dirname(os.path.abspath(dnnkit.__file__)))
env = dict(os.environ, COLUMNS="100",
           PYTHONPATH=os.pathsep.join(p for p in (_src, os.environ.get("PYTHONPATH")) if p))
for cmd in ([], ["demo"], ["train"], ["gradcheck"], ["bench"], ["sweep"]):
    out = subprocess.run([sys.executable, "-c", "import sys, dnnkit.cli as c; sys.exit(c.main(sys.argv[1:]))",
                          *cmd, "--help"], capture_output=True, text=True, env=env)
    (_gen / f"cli_{'_'.join(cmd) or 'main'}.txt").write_text(out.stdout or out.stderr)


# ---------------------------------------------------------------------------------------------------------
# dnnkit's docstrings are written for help(): plain text with ``literals``, *emphasis*, math like |J| or
# W * x, and indented tables right under a line of prose. Before numpydoc and docutils read them, this
# hook makes exactly those plain-text habits valid reStructuredText (and nothing else), so the build can
# treat every remaining warning as an error:
#   |...|        -> ``|...|``   (docutils would read a substitution reference)
#   a lone *     -> \*         (an emphasis start-string without an end)
#   an indented block right after a line of text (or text right after one) gets a blank line around it
import re as _re

_LITERAL = _re.compile(r"(``.+?``)")
_PIPES = _re.compile(r"(?<![\w`|])\|[^|\n`]+\|(?![\w`|])")
_EMPH = _re.compile(r"(?<![\w*\\])\*(?=[^\s*])[^*\n]*?(?<=[^\s*])\*(?![\w*])")


def _plain_segment(text: str) -> str:
    text = _PIPES.sub(lambda m: f"``{m.group(0)}``", text)
    out, pos = [], 0
    for m in _EMPH.finditer(text):
        out.append(text[pos:m.start()].replace("*", r"\*"))
        out.append(m.group(0))
        pos = m.end()
    out.append(text[pos:].replace("*", r"\*"))
    return "".join(out)


def _fix_line(line: str) -> str:
    parts = _LITERAL.split(line)
    return "".join(p if i % 2 else _plain_segment(p) for i, p in enumerate(parts))


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _fix_docstring(app, what, name, obj, options, lines):
    fixed: list[str] = []
    in_code = False
    for line in lines:
        stripped = line.strip()
        if stripped.endswith("::"):
            in_code = True                      # a literal block follows: leave it alone
            fixed.append(line)
            continue
        if in_code and (not stripped or _indent(line) > 0):
            fixed.append(line)
            continue
        in_code = False
        prev = fixed[-1] if fixed else ""
        if stripped and prev.strip() and _indent(line) != _indent(prev) and not stripped.startswith(("- ", "* ")):
            fixed.append("")                    # an indentation change without a blank line
        fixed.append(_fix_line(line))
    lines[:] = fixed


def _index_source(app, docname, source):
    # docs/bad_inputs.md is written with issue 12; until it exists the index does not list it
    if docname == "index" and not (HERE / "bad_inputs.md").exists():
        source[0] = source[0].replace("bad_inputs*\n", "")


def setup(app):
    app.connect("autodoc-process-docstring", _fix_docstring, priority=100)
    app.connect("source-read", _index_source)
