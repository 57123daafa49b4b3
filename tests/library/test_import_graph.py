"""The package's imports form no circle: every ``import`` / ``from ... import`` of every module,
including the ones inside functions (a lazy import hides a circle at run time, it does not remove it),
read from the source with :mod:`ast`. docs/ARCHITECTURE.md: imports go down or sideways, never round."""
import ast
import os

import nnunet_losses

PACKAGE_DIR = os.path.dirname(nnunet_losses.__file__)
PACKAGE = "nnunet_losses"


def _modules():
    out = {}
    for folder, _, files in os.walk(PACKAGE_DIR):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(folder, f)
                name = ".".join([PACKAGE] + os.path.relpath(path, PACKAGE_DIR)[:-3].split(os.sep))
                is_pkg = f == "__init__.py"
                out[name[:-len(".__init__")] if is_pkg else name] = (path, is_pkg)
    return out


def import_graph():
    """``{module: {modules of the package it imports}}``."""
    mods = _modules()
    graph = {}
    for mod, (path, is_pkg) in mods.items():
        here = mod if is_pkg else mod.rsplit(".", 1)[0]
        targets = set()
        with open(path) as f:
            tree = ast.parse(f.read())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = here.split(".")[:len(here.split(".")) - node.level + 1]
                    base = ".".join(parts + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                for a in node.names:  # "from pkg import module" imports the module
                    targets.add(f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base)
        graph[mod] = {t for t in targets if t in mods and t != mod}
    return graph


def circles(graph):
    """The strongly connected components with more than one module (Tarjan), sorted."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def test_the_circle_finder_finds_a_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert circles(graph) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_relative_and_function_level_imports():
    graph = import_graph()
    assert "nnunet_losses.nnunet.maps.registry" in graph["nnunet_losses.nnunet.maps.errors"]
    assert "nnunet_losses.nnunet.maps.build" in graph["nnunet_losses.nnunet.maps.dataset"]  # inside ensure_maps


def test_no_import_circle_in_the_package():
    assert circles(import_graph()) == []
