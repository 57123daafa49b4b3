"""The import graph of the package (with the trainers and the benchmarks), read from the source with
``ast`` (nothing is imported, so no nnU-Net is needed): no import circle, imports inside functions
included; no module imports another module's underscore name; the library's layers. The rules are in
docs/ARCHITECTURE.md.

An edge goes from a module to the module it names: ``from .a import b`` is an edge to ``a.b`` when that
is a module, else to ``a`` (its ``__init__``). Underscore MODULES (``_core``, ``_checks``, ...) are the
package's internal shared modules and may be imported; a ``_name`` defined in another module may not be,
neither by ``from m import _name`` nor as ``m._name``. Dunder names (``__version__``) are public.
"""
import ast
import os
from typing import Dict, List, Set, Tuple

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACKAGES = ("nnunet_losses", "trainers", "benchmarks")  # the packages whose import graph is checked

#: known import circles still being taken apart, each by its modules; the test fails on a listed circle
#: that no longer exists, so an entry goes as soon as its fix lands and the list stays exact
KNOWN_CIRCLES: Set[frozenset] = set()


def package_modules(root: str, package: str) -> Dict[str, str]:
    """Dotted module name -> file, for every ``.py`` file of ``package`` under ``root``."""
    out = {}
    for folder, dirs, files in os.walk(os.path.join(root, package)):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for f in sorted(files):
            if f.endswith(".py"):
                parts = os.path.relpath(os.path.join(folder, f), root)[:-3].split(os.sep)
                if parts[-1] == "__init__":
                    parts = parts[:-1]
                out[".".join(parts)] = os.path.join(folder, f)
    return out


def _absolute(module: str, path: str, level: int, name: str) -> str:
    """The absolute module of ``from <level dots><name> import ...`` written in ``module``."""
    if level == 0:
        return name
    parts = module.split(".")
    if not path.endswith("__init__.py"):
        parts = parts[:-1]  # a module's relative imports start at its package
    parts = parts[:len(parts) - (level - 1)]
    return ".".join(parts + ([name] if name else []))


def _owner(name: str, modules: Dict[str, str]) -> str:
    """The longest prefix of dotted ``name`` that is one of ``modules`` ("" if none)."""
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in modules:
            return ".".join(parts[:n])
    return ""


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def read_imports(modules: Dict[str, str]) -> Tuple[Dict[str, Set[str]], List[str]]:
    """(edges: module -> the package modules it imports, anywhere in its body; the underscore-name uses)."""
    edges: Dict[str, Set[str]] = {m: set() for m in modules}
    private: List[str] = []
    for module, path in modules.items():
        with open(path, encoding="utf-8") as fh:
            tree = ast.parse(fh.read(), path)
        aliases: Dict[str, str] = {}  # local name -> package module bound to it
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    target = _owner(a.name, modules)
                    if target:
                        edges[module].add(target)
                        if a.asname:
                            aliases[a.asname] = target
            elif isinstance(node, ast.ImportFrom):
                source = _absolute(module, path, node.level, node.module or "")
                for a in node.names:
                    sub = f"{source}.{a.name}"
                    if sub in modules:  # a module imported by name: `from . import x`
                        edges[module].add(sub)
                        aliases[a.asname or a.name] = sub
                    elif source in modules:
                        edges[module].add(source)
                        if _private(a.name):
                            private.append(f"{module}:{node.lineno} imports {a.name} from {source}")
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                    and node.value.id in aliases and _private(node.attr) \
                    and f"{aliases[node.value.id]}.{node.attr}" not in modules:
                private.append(f"{module}:{node.lineno} uses {aliases[node.value.id]}.{node.attr}")
        edges[module].discard(module)
    return edges, private


def import_circles(edges: Dict[str, Set[str]]) -> List[frozenset]:
    """The strongly connected components of more than one module (Tarjan), i.e. every import circle."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    circles: List[frozenset] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(frozenset(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return circles


def _graph():
    modules = {}
    for package in PACKAGES:
        modules.update(package_modules(REPO, package))
    return modules, read_imports(modules)


def test_no_import_circle():
    modules, (edges, _) = _graph()
    assert "nnunet_losses.nnunet.maps.registry" in modules and edges["nnunet_losses.contour"]  # the walk sees
    circles = set(import_circles(edges))
    new = [sorted(c) for c in circles - KNOWN_CIRCLES]
    assert not new, f"import circles (imports inside functions count): {new}"
    gone = [sorted(c) for c in KNOWN_CIRCLES - circles]
    assert not gone, f"these circles are gone: remove them from KNOWN_CIRCLES: {gone}"


def test_no_module_imports_another_modules_underscore_name():
    _, (_, private) = _graph()
    assert not private, "underscore names are private to their module; give a shared one a public name:\n" \
        + "\n".join(private)


#: folders of nnunet_losses/nnunet/ -> the other folders there they may import (folders not listed: any)
NNUNET_FOLDERS_USED = {"training": {"maps"}, "maps": set(), "inference": set()}


def test_imports_go_down_the_layers():
    """The layers of docs/ARCHITECTURE.md: morphology/ stands on its own; a loss imports only the shared
    modules (``_checks``, ``_core``, ``_distributed``, ``dice``) and morphology/, never another loss; the
    library never imports the nnU-Net layer; in nnunet/, training uses maps, and maps and inference use
    no other folder; nothing in nnunet_losses imports the trainers."""
    import nnunet_losses
    _, (edges, _) = _graph()
    lib = "nnunet_losses."
    losses = {lib + m for m in nnunet_losses._LAZY.values() if not m.startswith("_")}
    shared = {lib + m for m in ("_checks", "_core", "_distributed", "dice")}
    assert len(losses) == 11 and all(m in edges for m in losses | shared)
    nn = lib + "nnunet."
    wrong = []
    for module, targets in edges.items():
        for t in sorted(targets):
            if module.startswith(lib + "morphology") and not t.startswith(lib + "morphology"):
                wrong.append(f"{module} -> {t} (morphology/ imports only morphology/)")
            if module in losses and t not in shared and not t.startswith(lib + "morphology."):
                wrong.append(f"{module} -> {t} (a loss imports only {sorted(shared)} and morphology/)")
            if module.startswith(lib) and not module.startswith(lib + "nnunet") and t.startswith(lib + "nnunet"):
                wrong.append(f"{module} -> {t} (the library does not import the nnU-Net layer)")
            if module.startswith(nn) and t.startswith(nn) and module.split(".")[2] != t.split(".")[2]:
                allowed = NNUNET_FOLDERS_USED.get(module.split(".")[2])
                if allowed is not None and t.split(".")[2] not in allowed:
                    wrong.append(f"{module} -> {t} (nnunet/{module.split('.')[2]} uses only {sorted(allowed)})")
            if module.startswith("nnunet_losses") and t.split(".")[0] == "trainers":
                wrong.append(f"{module} -> {t} (nothing in nnunet_losses imports the trainers)")
    assert not wrong, "\n".join(wrong)


def test_the_walk_finds_a_lazy_circle_and_underscore_names(tmp_path):
    """The checks above can fail: a toy package with a circle closed by an import inside a function, a
    ``from m import _name``, an ``m._name`` and allowed uses (underscore module, dunder, submodule)."""
    files = {
        "toy/__init__.py": "from ._shared import helper\nfrom .a import __doc__\n",
        "toy/_shared.py": "def helper():\n    pass\n",
        "toy/a.py": "from .b import public\n",
        "toy/b.py": "def public():\n    from . import c\n    return c\n",
        "toy/c.py": "from toy.a import _hidden\nfrom toy import b as mod\nx = mod._secret\n",
        "toy/sub/__init__.py": "",
        "toy/sub/d.py": "from .. import _shared\nfrom ..sub import d\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    modules = package_modules(str(tmp_path), "toy")
    assert set(modules) == {"toy", "toy._shared", "toy.a", "toy.b", "toy.c", "toy.sub", "toy.sub.d"}
    edges, private = read_imports(modules)
    assert edges["toy.sub.d"] == {"toy._shared"}  # its own name is no edge
    assert import_circles(edges) == [frozenset({"toy.a", "toy.b", "toy.c"})]
    assert private == ["toy.c:1 imports _hidden from toy.a", "toy.c:3 uses toy.b._secret"]


@pytest.mark.parametrize("module, level, name, expected", [
    ("p.q.m", 1, "x", "p.q.x"), ("p.q.m", 2, "", "p"), ("p.q", 1, "x", "p.q.x"), ("p.q", 0, "a.b", "a.b")])
def test_relative_imports_resolve_like_python(module, level, name, expected):
    path = "p/q/__init__.py" if module == "p.q" else "p/q/m.py"
    assert _absolute(module, path, level, name) == expected
