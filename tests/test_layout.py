"""The package's architecture, kept: no import circles, no import against the layers, stage modules
where the rule files say, and no oversized workflow file."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "pipeline"

# Lower numbers sit below higher ones: a module may import its own layer or lower ones only.
# GaitCrafter is a model package used by generation (its sampler); its experiment stage
# (gaitcrafter/stage.py: quality, novelty, augmentation with a recogniser) sits at the evaluation level.
LAYERS = {
    "pipeline.contracts": 0, "pipeline.runner": 0, "pipeline.config": 0, "pipeline.skeleton": 0, "pipeline.runs": 0,
    "pipeline.io": 1,
    "pipeline.world": 2, "pipeline.datasets": 2,
    "pipeline.perception": 3, "pipeline.recognisers": 3,
    "pipeline.gaitcrafter": 4,
    "pipeline.generation": 5,
    "pipeline.evaluation": 6, "pipeline.gaitcrafter.stage": 6,
    "pipeline.study": 7,
    "pipeline.cli": 8,
}  # fmt: skip


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """module → the pipeline modules it imports (module-level and lazy, inside functions, alike)."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps: set[str] = set()
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = name.split(".") if is_package else name.split(".")[:-1]
                    parts = parts[: len(parts) - (node.level - 1)]
                    base = ".".join([*parts, *([node.module] if node.module else [])])
                targets = [base, *(f"{base}.{a.name}" for a in node.names)]
            deps.update(t for t in targets if t in modules and t != name)
        graph[name] = deps
    return graph


def layer_of(module: str) -> int | None:
    matches = [k for k in LAYERS if module == k or module.startswith(k + ".")]
    return LAYERS[max(matches, key=len)] if matches else None


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_circles():
    assert cycles(import_graph()) == []


def test_cycle_finder_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_every_module_has_a_layer_and_imports_run_downward():
    graph = import_graph()
    unplaced = sorted(m for m in graph if m != "pipeline" and layer_of(m) is None)
    assert unplaced == []
    upward = [
        f"{a} -> {b}" for a, deps in graph.items() for b in deps if layer_of(a) is not None and layer_of(b) is not None
        and layer_of(b) > layer_of(a)
    ]  # fmt: skip
    assert upward == []


def test_rule_files_name_an_existing_stage_module():
    """Each rule file's header names the pipeline module that does its work, and that module exists."""
    for rule_file in sorted((ROOT / "workflow" / "rules").glob("*.smk")):
        text = rule_file.read_text()
        if "\nrule " not in text:  # common.smk, localrules.smk: no stage of their own
            continue
        header = text.split("\nrule ", 1)[0]
        paths = re.findall(r"pipeline/[\w/]+(?:\.py)?", header)
        assert paths, f"{rule_file.name}: its header names no pipeline module"
        for path in paths:
            assert (ROOT / path).exists() or (ROOT / f"{path}.py").exists(), f"{rule_file.name}: {path}"


def test_no_workflow_file_is_oversized():
    files = [ROOT / "workflow" / "Snakefile", *(ROOT / "workflow" / "rules").rglob("*.smk")]
    long = {f.name: n for f in files if (n := len(f.read_text().splitlines())) > 400}
    assert long == {}


def test_importing_the_package_pins_the_kernels_unless_the_user_chose():
    """A fresh process that imports pipeline runs torch with the AVX2 pin; a user's setting wins."""
    import os
    import subprocess
    import sys

    code = "import os, pipeline; print(os.environ['ONEDNN_MAX_CPU_ISA'], os.environ['MKL_CBWR'])"
    env = {k: v for k, v in os.environ.items() if k not in ("ONEDNN_MAX_CPU_ISA", "MKL_CBWR")}
    pinned = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=ROOT)
    assert pinned.stdout.split() == ["AVX2", "AVX2"]
    chosen = subprocess.run([sys.executable, "-c", code], env={**env, "ONEDNN_MAX_CPU_ISA": "ALL"},
                            capture_output=True, text=True, cwd=ROOT)  # fmt: skip
    assert chosen.stdout.split() == ["ALL", "AVX2"]
