"""The package's shape: imports flow one way (no circle), each module stays readable, and importing the package
leaves the process's global state alone."""

from __future__ import annotations

import ast
import json
import subprocess
import sys

from .helpers import ROOT

PACKAGE = ROOT / "src" / "catdog_pl"
MAX_LINES = 300


def import_graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports (anywhere in its body, function-local imports included)."""
    modules = {path.stem: path for path in PACKAGE.glob("*.py") if path.stem not in ("__init__", "__main__")}
    graph = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("catdog_pl"):
                parts = node.module.split(".")
                found |= {parts[1]} if len(parts) > 1 else {alias.name for alias in node.names}
            elif isinstance(node, ast.Import):
                found |= {alias.name.split(".")[1] for alias in node.names if alias.name.startswith("catdog_pl.")}
        graph[name] = (found & modules.keys()) - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return path[path.index(target) :] + [target]
            if not state.get(target) and (cycle := visit(target)):
                return cycle
        state[node] = 2
        path.pop()
        return []

    for node in sorted(graph):
        if not state.get(node) and (cycle := visit(node)):
            return cycle
    return []


def test_imports_form_no_circle():
    graph = import_graph()
    assert graph["cli"] and "cli" not in set().union(*graph.values())  # the command line is on top
    assert find_cycle(graph) == [], " -> ".join(find_cycle(graph))


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) == []


def test_every_module_is_short_enough_to_read():
    long = {path.name: n for path in PACKAGE.glob("*.py") if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert long == {}, f"modules over {MAX_LINES} lines: {long}"


def test_importing_the_package_changes_no_process_setting():
    probe = (
        "import json, os, torch; before = (dict(os.environ), torch.get_num_threads()); "
        "import catdog_pl, catdog_pl.cli, catdog_pl.prediction, catdog_pl.report; "
        "after = (dict(os.environ), torch.get_num_threads()); "
        "changed = sorted(k for k in set(before[0]) | set(after[0]) if before[0].get(k) != after[0].get(k)); "
        "print(json.dumps({'env': changed, 'threads': [before[1], after[1]]}))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    found = json.loads(result.stdout.strip().splitlines()[-1])
    # Lightning itself sets PYTORCH_NVML_BASED_CUDA_CHECK when imported; nothing else may change.
    assert set(found["env"]) <= {"PYTORCH_NVML_BASED_CUDA_CHECK"}, found["env"]
    assert found["threads"][0] == found["threads"][1]
