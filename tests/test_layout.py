"""The package's layout rules, checked on its source: the import graph has no cycles (the rule
registry's lazy load of its own built-ins aside), nothing in the package imports the command
line or the top-level facade, modules stay readable in one sitting, and the light layers (the
rule API, the .arch language, the plan) load neither torch nor triton."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from support.paths import ROOT

PACKAGE = ROOT / "ntkc"
MAX_LINES = 620  # "about 600": a module a reader takes in at one sitting
LAZY_BUILTINS = ("ntkc.rules.registry", "ntkc.rules.builtin")  # the one allowed edge back: the registry loads its built-ins lazily


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Every ntkc module `name` imports, anywhere in the file (lazy imports count)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in modules else mod for a in node.names]
        else:
            continue
        found |= {t for t in targets if t in modules and t != name}
    return found


def _graph():
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(comp)

    sys.setrecursionlimit(10_000)
    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_the_import_graph_has_no_cycles():
    graph = _graph()
    assert "ntkc.store.ray_runner" in graph["ntkc.store.job"]  # the scan sees imports inside functions too
    registry, builtin = LAZY_BUILTINS
    assert builtin in graph[registry]
    graph[registry] = graph[registry] - {builtin}
    cycles = _cycles(graph)
    assert not cycles, f"import cycles: {cycles}"


def test_nothing_in_the_package_imports_the_cli_or_the_facade():
    for name, deps in _graph().items():
        if name == "ntkc.cli":
            continue
        assert "ntkc.cli" not in deps, f"{name} imports the command line"
        if name != "ntkc":
            assert "ntkc" not in deps, f"{name} imports the top-level facade `ntkc`; import the subpackage it needs"


def test_no_module_is_longer_than_a_sitting():
    long = {str(p.relative_to(ROOT)): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_rule_api_language_and_plan_load_neither_torch_nor_triton():
    code = (
        "import sys\n"
        "import ntkc.rules, ntkc.lang\n"
        "from ntkc.plan import lower\n"
        "net = ntkc.lang.load('examples/user_sine.arch')\n"
        "plan = lower(ntkc.lang.load('examples/enhanced_cntk_d11.arch'))\n"
        "assert plan.pair.flops() > 0 and net.layers\n"
        "heavy = sorted(m for m in ('torch', 'triton', 'numba') if m in sys.modules)\n"
        "print(heavy)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]", f"loaded: {run.stdout}"
