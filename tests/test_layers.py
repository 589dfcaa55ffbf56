"""The import layers of docs/DEVELOPING.md, checked by walking every import statement of ``ltx2_nodes/``.

The layer table is read from the document itself, so the document stays the one owner of the layering: a
module may import modules of lower layers and of its own row entry only; nothing imports ComfyUI except
``comfy_env.py`` (inside functions); inside the package imports are relative; there are no import cycles.
Imports inside functions count like module-level ones (a lazy import is still a dependency).
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "ltx2_nodes"
COMFY_MODULES = {"comfy", "comfy_api", "comfy_extras", "comfy_execution", "folder_paths", "server", "execution",
                 "nodes", "node_helpers", "latent_preview"}
COMFY_NAME = re.compile(r"^(comfy|comfy_api|comfy_extras|comfy_execution|folder_paths)(\.\w+)*$")
PROBE = "comfy_env.py"


@cache
def layer_table() -> dict[str, int]:
    """``{"model/": 2, "errors.py": 0, ...}`` from the rows ``| <layer> | `entry`, ... | ... |``."""
    table = {}
    for line in (REPO / "docs" / "DEVELOPING.md").read_text(encoding="utf-8").splitlines():
        match = re.match(r"^\|\s*(\d+)\s*\|([^|]*)\|", line)
        if match:
            for entry in re.findall(r"`([^`]+)`", match.group(2)):
                assert entry not in table, f"docs/DEVELOPING.md lists {entry} twice"
                table[entry] = int(match.group(1))
    assert table, "docs/DEVELOPING.md has no layer table"
    return table


def unit_of(path: Path) -> str:
    """The table entry of a file: ``model/`` for ``ltx2_nodes/model/x.py``, ``paths.py`` for ``ltx2_nodes/paths.py``."""
    parts = path.relative_to(PACKAGE).parts
    return parts[0] + "/" if len(parts) > 1 else parts[0]


def dotted(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Path]:
    return {dotted(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def file_of(module: str) -> Path | None:
    return modules().get(module)


def imports(path: Path) -> list[tuple[ast.AST, str]]:
    """``(node, absolute module)`` for every import of ``path`` that resolves inside the package."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = dotted(path) if path.name == "__init__.py" else dotted(path).rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom) or not node.level:
            continue
        base = package.split(".")[:len(package.split(".")) - node.level + 1]
        target = ".".join(base + ([node.module] if node.module else []))
        for alias in node.names:  # ``from .. import paths`` imports the module ltx2_nodes.paths
            found.append((node, f"{target}.{alias.name}" if f"{target}.{alias.name}" in modules() else target))
    return found


def function_bodies(tree: ast.AST) -> set[ast.AST]:
    inside = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            inside.update(n for n in ast.walk(node) if n is not node)
    return inside


def test_every_module_has_a_row_in_the_layer_table_and_every_row_names_modules():
    units = {unit_of(p) for p in modules().values()}
    assert not units - set(layer_table()), f"add these to the layer table in docs/DEVELOPING.md: " \
                                           f"{sorted(units - set(layer_table()))}"
    assert not set(layer_table()) - units, f"the layer table names missing modules: " \
                                           f"{sorted(set(layer_table()) - units)}"


def test_modules_import_only_lower_layers_or_their_own_package():
    table = layer_table()
    wrong = []
    for path in modules().values():
        unit = unit_of(path)
        for node, target in imports(path):
            target_file = file_of(target)
            assert target_file is not None, f"{path.relative_to(REPO)}:{node.lineno} imports unknown {target}"
            other = unit_of(target_file)
            if other != unit and table[other] >= table[unit]:
                wrong.append(f"{path.relative_to(REPO)}:{node.lineno} ({unit}, layer {table[unit]}) imports "
                             f"{target} ({other}, layer {table[other]})")
    assert not wrong, "imports against the layer table:\n" + "\n".join(wrong)


def test_model_imports_nothing_but_torch_and_errors():
    for path in (PACKAGE / "model").rglob("*.py"):
        for node, target in imports(path):
            assert target.startswith("ltx2_nodes.model") or target == "ltx2_nodes.errors", \
                f"{path.relative_to(REPO)}:{node.lineno} imports {target}: model/ is pure PyTorch"


def test_only_the_probe_imports_comfyui_and_only_inside_functions():
    wrong = []
    for path in modules().values():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        lazy = function_bodies(tree)
        where = path.relative_to(REPO)
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            for name in names:
                if name.split(".")[0] in COMFY_MODULES:
                    wrong.append(f"{where}:{node.lineno} imports {name}")
                if name.split(".")[0] == "ltx2_nodes":
                    wrong.append(f"{where}:{node.lineno} imports {name} absolutely (relative imports only)")
            # sys.modules look-ups and importlib calls by name: only the probe may name a ComfyUI module
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and COMFY_NAME.match(node.value):
                if path.name != PROBE or path.parent != PACKAGE or node not in lazy:
                    wrong.append(f"{where}:{node.lineno} names ComfyUI's {node.value!r}; ask comfy_env instead")
    assert not wrong, "\n".join(wrong)


def test_there_are_no_import_cycles():
    graph = {name: {target for _node, target in imports(path) if target != name} for name, path in modules().items()}
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while not component or component[-1] != node:
                component.append(stack.pop())
                on_stack.discard(component[-1])
            if len(component) > 1:
                cycles.append(sorted(component))

    for name in graph:
        if name not in index:
            visit(name)
    assert not cycles, f"import cycles: {cycles}"
