"""python/dnnkit/_core.pyi is kept true: every name the compiled module binds is in the stub with the
signature pybind11 reports for it (parameter names, annotations, defaults, return type, overloads), and the
stub names nothing the module lacks. The module is the source of truth; a failure lists every drift.

Regenerate the stub after changing the bindings: dev/build.sh && dev/stub.sh."""
from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

from dnnkit import _core

MOD = "dnnkit._core."


def _stub_path() -> Path:
    # the stub next to the module under test (the installed wheel's or the source tree's)
    return Path(_core.__file__).with_name("_core.pyi")


def _canon_def(sig: str, name: str, method: bool) -> str:
    """'name(a: int, b: str = 1) -> None' (a pybind11 docstring line or a stub def) -> canonical text."""
    sig = sig.replace(MOD, "")
    sig = re.sub(r"=\s*<[^<>]*>", "= ...", sig)          # defaults pybind11 cannot print as Python
    tree = ast.parse(f"def {sig}: ...")
    fn = tree.body[0]
    assert isinstance(fn, ast.FunctionDef)
    fn.name = name
    return _canon_fn(fn, method)


def _literal_or_ellipsis(node: ast.expr) -> ast.expr:
    try:
        ast.literal_eval(node)
        return node
    except ValueError:
        return ast.Constant(value=...)


def _canon_fn(fn: ast.FunctionDef, method: bool) -> str:
    args = fn.args
    if method and (args.posonlyargs or args.args):
        first = (args.posonlyargs or args.args)[0]
        first.annotation = None                            # self's annotation: the class itself
        first.arg = "self"                                 # pybind11 calls a property getter's self arg0
    for a in args.posonlyargs + args.args + args.kwonlyargs:
        a.type_comment = None
    # a default that is no Python literal (pybind11 prints float('inf') as inf) is `...` in a stub
    args.defaults = [_literal_or_ellipsis(d) for d in args.defaults]
    args.kw_defaults = [None if d is None else _literal_or_ellipsis(d) for d in args.kw_defaults]
    text = f"{fn.name}({ast.unparse(args)})"
    if fn.returns is not None:
        text += " -> " + ast.unparse(fn.returns)
    return text


def _runtime_sigs(obj, name: str, method: bool) -> list[str]:
    doc = obj.__doc__ or ""
    lines = doc.splitlines()
    if len(lines) > 1 and lines[1].strip() == "Overloaded function.":
        pat = re.compile(r"^\d+\. (" + re.escape(name) + r"\(.*)$")
        sigs = [m.group(1) for m in map(pat.match, lines) if m]
    else:
        sigs = [lines[0]] if lines else []
    if not sigs or not sigs[0].startswith(name + "("):
        raise AssertionError(f"{name}: no pybind11 signature in its docstring: {doc[:200]!r}")
    return [_canon_def(s, name, method) for s in sigs]


def _runtime_api() -> dict[str, object]:
    """{'f': [sig, ...], 'Cls': {'meth': [sig], 'prop': ('property', sig)}, 'CONST': ('attribute', type)}"""
    api: dict[str, object] = {}
    for name, obj in vars(_core).items():
        if name.startswith("__"):
            continue
        if inspect.ismodule(obj):  # a submodule of _core: a class of static methods in the one-file stub
            api[name] = {f: _runtime_sigs(g, f, False) for f, g in vars(obj).items()
                         if not f.startswith("_") and callable(g)}
        elif inspect.isclass(obj):
            members: dict[str, object] = {}
            for mname, m in vars(obj).items():
                if mname.startswith("_") and mname != "__init__":
                    continue
                if isinstance(m, property):
                    doc = (m.fget.__doc__ or "").splitlines()[0]
                    members[mname] = ("property", _canon_def(mname + doc, mname, True))
                elif callable(m) or isinstance(m, (staticmethod, classmethod)):
                    f = m.__func__ if isinstance(m, (staticmethod, classmethod)) else m
                    members[mname] = _runtime_sigs(f, mname, not isinstance(m, staticmethod))
                else:
                    members[mname] = ("attribute", type(m).__name__)
            api[name] = members
        elif callable(obj):
            api[name] = _runtime_sigs(obj, name, False)
        else:
            api[name] = ("attribute", type(obj).__name__)
    return api


def _stub_body(body: list[ast.stmt], in_class: bool) -> dict[str, object]:
    out: dict[str, object] = {}
    for node in body:
        if isinstance(node, ast.FunctionDef):
            decos = {ast.unparse(d) for d in node.decorator_list}
            if "property" in decos:
                out[node.name] = ("property", _canon_fn(node, True))
            elif any(d.endswith(".setter") for d in decos):
                continue
            else:
                sig = _canon_fn(node, in_class and "staticmethod" not in decos)
                prev = out.get(node.name)
                out[node.name] = (prev if isinstance(prev, list) else []) + [sig]
        elif isinstance(node, ast.ClassDef):
            out[node.name] = _stub_body(node.body, True)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            if node.target.id != "__all__":
                out[node.target.id] = ("attribute", ast.unparse(node.annotation))
    return out


def _stub_api() -> dict[str, object]:
    return _stub_body(ast.parse(_stub_path().read_text()).body, False)


def _params(sig: str) -> list[tuple[str, str, str]]:
    fn = ast.parse(f"def {sig}: ...").body[0]
    assert isinstance(fn, ast.FunctionDef)
    a = fn.args
    pos = a.posonlyargs + a.args
    defaults = [None] * (len(pos) - len(a.defaults)) + list(a.defaults)
    rows = [(p.arg, ast.unparse(p.annotation) if p.annotation else "", ast.unparse(d) if d else "")
            for p, d in zip(pos, defaults)]
    rows += [(p.arg, ast.unparse(p.annotation) if p.annotation else "", ast.unparse(d) if d else "")
             for p, d in zip(a.kwonlyargs, a.kw_defaults)]
    rows.append(("-> return", ast.unparse(fn.returns) if fn.returns else "", ""))
    return rows


def _where_differs(r: object, s: object) -> str:
    """' (parameter 3: ... vs ...)' for the first differing parameter of the first differing overload."""
    if isinstance(r, tuple):
        r, s = [r[1]], [s[1]] if isinstance(s, tuple) else s
    if not (isinstance(r, list) and isinstance(s, list)):
        return ""
    if len(r) != len(s):
        return f" ({len(r)} overload(s) in _core, {len(s)} in the stub)"
    for k, (x, y) in enumerate(zip(r, s)):
        px, py = _params(x), _params(y)
        if len(px) != len(py):
            return f" (overload {k + 1}: {len(px) - 1} parameters in _core, {len(py) - 1} in the stub)"
        for i, (a, b) in enumerate(zip(px, py)):
            if a != b:
                return f" (overload {k + 1}, parameter {i} {a[0]!r}: _core {a}, stub {b})"
    return ""


def _drift(runtime: dict, stub: dict, where: str = "") -> list[str]:
    problems = []
    for name in sorted(set(runtime) | set(stub)):
        q = where + name
        if name not in stub:
            problems.append(f"{q}: bound in _core, missing from the stub (runtime: {runtime[name]})")
            continue
        if name not in runtime:
            problems.append(f"{q}: in the stub, not bound in _core (stub: {stub[name]})")
            continue
        r, s = runtime[name], stub[name]
        if isinstance(r, dict) or isinstance(s, dict):
            if not (isinstance(r, dict) and isinstance(s, dict)):
                problems.append(f"{q}: a class on one side only (runtime {type(r).__name__}, stub {type(s).__name__})")
            else:
                problems += _drift(r, s, q + ".")
        elif r != s:
            problems.append(f"{q}: signature drifted{_where_differs(r, s)}\n    _core: {r}\n    stub : {s}")
    return problems


def test_py_typed_ships_next_to_the_package():
    import dnnkit

    assert (Path(dnnkit.__file__).parent / "py.typed").is_file()


def test_stub_matches_every_bound_name_and_signature():
    assert _stub_path().is_file(), f"no stub next to {_core.__file__}"
    problems = _drift(_runtime_api(), _stub_api())
    assert not problems, "_core.pyi drifted from the compiled module:\n" + "\n".join(problems)


def test_stub_test_detects_drift():
    # the comparison itself can fail: a renamed parameter, a dropped default and a missing name are reported
    runtime = _runtime_api()
    fname = next(n for n, v in runtime.items() if isinstance(v, list) and "(" in v[0] and "()" not in v[0])
    stub = dict(runtime)
    stub[fname] = [re.sub(r"\((\w+)", r"(renamed_arg", runtime[fname][0], count=1)]  # type: ignore[index]
    del stub[next(n for n in runtime if n != fname)]
    problems = _drift(runtime, stub)
    assert any(p.startswith(f"{fname}: signature drifted") for p in problems), problems
    assert any("missing from the stub" in p for p in problems), problems

