"""The house layering, read from the source: ``sweeps -> scorers -> trainables``, nothing
points back up, and no two modules import each other (also not through a function-level
import, which is how circles used to be hidden)."""
import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LAYERS = ("trainables", "scorers", "sweeps")  # each may import only those before it
PACKAGES = set(LAYERS)


def project_imports(path: Path) -> set[str]:
    """Every project module ``path`` imports, at any depth of its code."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # "from scorers import keys" names module scorers.keys
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        found |= {n for n in names if n.split(".")[0] in PACKAGES}
    return found


def module_graph() -> dict[str, set[str]]:
    modules = {f"{p.parent.name}.{p.stem}": p for pkg in PACKAGES
               for p in (REPO / pkg).glob("*.py") if p.stem != "__init__"}
    return {name: {m for m in project_imports(path) if m in modules and m != name}
            for name, path in modules.items()}


def test_nothing_imports_a_higher_layer():
    graph = module_graph()
    upward = [(a, b) for a, deps in graph.items() for b in deps
              if LAYERS.index(b.split(".")[0]) > LAYERS.index(a.split(".")[0])]
    assert not upward, upward
    assert len(graph) > 30  # the walk found the modules


def test_no_import_circles():
    graph = module_graph()
    circles, state = [], {}

    def visit(node, path):
        state[node] = "open"
        for dep in sorted(graph[node]):
            if state.get(dep) == "open":
                circles.append(path[path.index(dep):] + [dep])
            elif dep not in state:
                visit(dep, path + [dep])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not circles, circles


def test_every_imported_project_name_exists():
    """A name a module or a benchmark imports from the project (at any depth, so also inside
    the functions only a long run reaches) still exists: a removed API cannot leave a
    benchmark that fails only when someone runs it."""
    import importlib

    missing = []
    files = [p for pkg in (*PACKAGES, "bench") for p in (REPO / pkg).glob("*.py")]
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if (isinstance(node, ast.ImportFrom) and node.module and node.level == 0
                    and node.module.split(".")[0] in PACKAGES):
                module = importlib.import_module(node.module)
                missing += [f"{path.relative_to(REPO)}: {node.module}.{a.name}"
                            for a in node.names if not hasattr(module, a.name)
                            and not (hasattr(module, "__path__") and importlib.util.find_spec(
                                f"{node.module}.{a.name}"))]
    assert len(files) > 40 and not missing, missing
