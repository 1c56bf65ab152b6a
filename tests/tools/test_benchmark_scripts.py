"""benchmarks/*.py (the scripts behind docs/performance.md's figures): every ``rnnkit`` name they import exists.

The scripts run by hand, not in the suite; one named ``rnnkit.kernels.times_w`` for a release after the function
moved to ``rnnkit.engine.step_gemm`` (found in session 15).  This reads each script's imports (no script runs)."""
import ast
import importlib
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPTS = sorted((ROOT / "benchmarks").glob("*.py"))


def rnnkit_imports(path: pathlib.Path) -> list:
    """[(line, module, name or None)] of every ``import rnnkit...`` / ``from rnnkit... import name`` in the file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "rnnkit":
            found += [(node.lineno, node.module, alias.name) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name, None) for a in node.names if a.name.split(".")[0] == "rnnkit"]
    return found


def test_the_scripts_are_found_and_import_rnnkit():
    assert len(SCRIPTS) >= 10, f"benchmarks/*.py: expected the benchmark scripts, got {[p.name for p in SCRIPTS]}"
    assert sum(bool(rnnkit_imports(p)) for p in SCRIPTS) >= 10


def test_the_reader_sees_both_import_forms(tmp_path):
    script = tmp_path / "s.py"
    script.write_text("import rnnkit.cells\nfrom rnnkit.engine.step_gemm import times_w as tw, pack\nimport numpy\n")
    assert rnnkit_imports(script) == [(1, "rnnkit.cells", None), (2, "rnnkit.engine.step_gemm", "times_w"),
                                      (2, "rnnkit.engine.step_gemm", "pack")]


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.name)
def test_every_rnnkit_name_a_script_imports_exists(path):
    for line, module, name in rnnkit_imports(path):
        mod = importlib.import_module(module)
        if name is not None and not hasattr(mod, name):
            try:
                importlib.import_module(f"{module}.{name}")  # a submodule
            except ModuleNotFoundError:
                pytest.fail(f"{path.name}:{line}: from {module} import {name}: {module} has no {name!r}")
