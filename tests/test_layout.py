"""The package's layout as the README states it: wings in layers, imports only downwards, no cycles."""

import ast
from pathlib import Path

import balance_lab

PACKAGE = Path(balance_lab.__file__).parent
# Lowest first: a module may import its own wing and the wings of lower layers, never a higher one.
LAYERS = [
    {"errors", "metrics", "console", "distributed", "privacy", "evidence", "figures"},  # shared leaves
    {"model", "balancing", "data", "diagnostics"},  # the subject of study, and what a run records of it
    {"store"},  # the MLflow store and what watches it
    {"ui"},  # the MLflow server of `balance-lab ui`
    {"config"},  # composition and validation (checks the store is reachable)
    {"training"},  # the life of one training run
    {"sweeping", "report"},  # grids of runs, and what is made of them
    {"cli", "train"},  # the entry points
]
RANK = {wing: i for i, layer in enumerate(LAYERS) for wing in layer}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """balance_lab modules `path` imports (at any depth of the file), each resolved to a file's module."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            raise AssertionError(f"{path}:{node.lineno}: a relative import; the layer checks read absolute ones")
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        else:
            continue
        for name in names:
            if name.startswith("balance_lab"):
                while name not in known and "." in name:  # `from pkg import function` -> pkg
                    name = name.rsplit(".", 1)[0]
                if name in known:
                    found.add(name)
    return found


def import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    known = set(files)
    graph = {}
    for name, path in files.items():
        graph[name] = imported_modules(path, known) - {name}
    return graph


def wing(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "balance_lab"


def test_every_module_belongs_to_a_wing_of_the_readme():
    assert {wing(m) for m in import_graph()} - {"balance_lab"} <= set(RANK)


def test_no_wing_imports_one_above_it():
    upward = [
        f"{m} -> {i}"
        for m, imports in import_graph().items()
        for i in imports
        if wing(i) != "balance_lab" and wing(m) != "balance_lab" and RANK[wing(i)] > RANK[wing(m)]
    ]
    assert not upward, upward


def test_no_import_cycle_between_files():
    graph = import_graph()
    state: dict[str, str] = {}
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(path[path.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    assert not cycles, cycles


def test_no_source_file_over_400_lines():
    long = {
        str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > 400
    }
    assert not long, long


def test_data_source_kind_is_tested_in_one_place_only():
    """`data.source` picks a class in data/sources/__init__.py (the registry); no other module asks
    for the string, and the source names are listed once."""
    import re

    registry = PACKAGE / "data" / "sources" / "__init__.py"
    asking = re.compile(r"""(\.source\s*(==|!=|in\b))|(get\(["']source["'])|(\["source"\])""")
    offenders = [
        str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py") if p != registry and asking.search(p.read_text())
    ]
    assert not offenders, offenders
    listed = [
        str(p.relative_to(PACKAGE))
        for p in PACKAGE.rglob("*.py")
        if re.search(r"""["']builtin["'],\s*["']text_dir["'],\s*["']tokens["']""", p.read_text())
    ]
    assert listed == [], listed  # the registry's dict is the list


def test_no_module_level_cache_in_data():
    """What a source works out is kept on its instance, not in a module-level cache."""
    import re

    pattern = re.compile(r"lru_cache|functools\.cache\b|^_[A-Z_]+: dict|^_[A-Z_]+ = \{\}", re.M)
    offenders = [str(p.relative_to(PACKAGE)) for p in (PACKAGE / "data").rglob("*.py") if pattern.search(p.read_text())]
    assert not offenders, offenders
