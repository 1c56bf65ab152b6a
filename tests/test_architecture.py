"""The floors of docs/architecture.md hold: every import inside rnnkit goes to the same floor or one
below, nothing imports the command line, no source file is over 400 lines and no line over 120 characters."""
import ast
import pathlib

import pytest

SRC = pathlib.Path(__file__).resolve().parents[1] / "src" / "rnnkit"

#: bottom to top; a module belongs to the first entry that is it or a package above it
FLOORS = (
    ("base", ("rnnkit.errors", "rnnkit._version", "rnnkit.module", "rnnkit.atomic")),
    ("kernels", ("rnnkit.kernels", "rnnkit.checks")),
    ("cells", ("rnnkit.cells",)),
    ("engine", ("rnnkit.engine",)),
    ("nn", ("rnnkit.nn",)),
    ("data", ("rnnkit.data",)),
    ("models", ("rnnkit.models",)),
    ("io", ("rnnkit.io",)),
    ("train", ("rnnkit.train",)),
    ("tasks", ("rnnkit.tasks",)),
    ("tools", ("rnnkit.diagnostics", "rnnkit.bench", "rnnkit.sweep")),
    ("cli", ("rnnkit.cli", "rnnkit.__main__")),
)


def _floor(module: str) -> int:
    for level, (_, prefixes) in enumerate(FLOORS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return level
    raise AssertionError(f"{module}: on no floor of FLOORS (add it to tests/test_architecture.py and "
                         f"docs/architecture.md)")


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: pathlib.Path) -> set:
    """Every rnnkit module ``path`` imports, at module level or inside a function."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if node.module is None:  # from . import x: the modules x
                found.update(f"{target}.{a.name}" for a in node.names)
            else:
                found.add(target)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m == "rnnkit" or m.startswith("rnnkit.")}


MODULES = sorted(p for p in SRC.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: _module_name(p))
def test_imports_go_down_the_floors(path):
    name = _module_name(path)
    for target in sorted(_imports(path)):
        if target == "rnnkit":  # the package facade: only the version-free public names (none import it)
            raise AssertionError(f"{name}: imports the package root 'rnnkit'; import the module that defines the name")
        if name == "rnnkit":  # the facade re-exports the library, never the floors above io
            assert _floor(target) <= _floor("rnnkit.io"), f"rnnkit/__init__.py imports {target}"
            continue
        assert _floor(target) <= _floor(name), (
            f"{name} (floor {FLOORS[_floor(name)][0]}) imports {target} (floor {FLOORS[_floor(target)][0]}): "
            "imports must go to the same floor or one below")


def test_nothing_imports_the_cli():
    users = sorted(_module_name(p) for p in MODULES
                   if not _module_name(p).startswith("rnnkit.cli") and _module_name(p) != "rnnkit.__main__"
                   and any(t == "rnnkit.cli" or t.startswith("rnnkit.cli.") for t in _imports(p)))
    assert users == [], f"modules below the command line import it: {users}"


def test_the_checker_sees_imports_inside_functions(tmp_path, monkeypatch):
    # a lazy import is an import too: a task importing the CLI inside a function is caught
    fake = tmp_path / "rnnkit" / "tasks" / "bad.py"
    fake.parent.mkdir(parents=True)
    fake.write_text("def f():\n    from ..cli import main\n    from . import readout\n")
    monkeypatch.setattr(__import__(__name__), "SRC", tmp_path / "rnnkit")
    assert _imports(fake) == {"rnnkit.cli", "rnnkit.tasks.readout"}
    assert _floor("rnnkit.cli") > _floor("rnnkit.tasks.bad")


MAX_LINES = 400
"""Lines a source file may have: one concept per module; a longer one is split by concept."""
MAX_LINE_LENGTH = 120
"""Characters a source line may have (``[tool.ruff] line-length`` in pyproject.toml)."""


#: files over MAX_LINES whose split is under way elsewhere; strict xfail: once split, remove the entry
BEING_SPLIT = {}


@pytest.mark.parametrize("path", [pytest.param(p, marks=pytest.mark.xfail(reason=BEING_SPLIT[_module_name(p)],
                                                                       strict=True))
                                  if _module_name(p) in BEING_SPLIT else p for p in MODULES],
                         ids=lambda p: _module_name(p))
def test_source_files_stay_small(path):
    n = len(path.read_text(encoding="utf-8").splitlines())
    assert n <= MAX_LINES, f"{_module_name(path)}: {n} lines; split it by concept (at most {MAX_LINES} lines)"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: _module_name(p))
def test_source_lines_stay_short(path):
    long = [f"{path.relative_to(SRC.parent)}:{i}: {len(line)} characters"
            for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if len(line) > MAX_LINE_LENGTH]
    assert long == [], f"lines over {MAX_LINE_LENGTH} characters: {long}"


def test_the_line_limit_is_the_formatters():
    import tomllib

    ruff = tomllib.loads((SRC.parents[1] / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["ruff"]
    assert ruff["line-length"] == MAX_LINE_LENGTH, "pyproject.toml [tool.ruff] line-length and the test disagree"


def test_no_test_file_skips_whole_modules():
    """Optional extras (torch, onnx, ...) are skipped per test, so the tests that do not need them
    still run where they are missing: no test module calls importorskip at module level."""
    offenders = []
    for path in sorted((SRC.parents[1] / "tests").rglob("*.py")):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if any(isinstance(n, ast.Attribute) and n.attr == "importorskip" for n in ast.walk(node)) and \
                    not isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                offenders.append(f"{path.name}:{node.lineno}")
    assert offenders == [], f"module-level importorskip: {offenders}"


def test_tests_live_in_a_folder_per_floor():
    """tests/<floor>/test_*.py: a test file sits in the folder of the floor it tests (tests of the whole
    tree, such as this one and packaging, stay at the top)."""
    tests = SRC.parents[1] / "tests"
    floors = {"cells", "engine", "nn", "data", "models", "io", "train", "tasks", "tools", "cli"}
    loose = sorted(p.name for p in tests.glob("test_*.py") if p.name not in ("test_architecture.py", "test_packaging.py"))
    assert loose == [], f"test files outside a floor folder: {loose}"
    strays = sorted(str(p.relative_to(tests)) for p in tests.glob("*/test_*.py") if p.parent.name not in floors)
    assert strays == [], f"test files in a folder that is no floor: {strays}"


def test_every_benchmark_result_is_cited_by_name():
    """benchmarks/results keeps only the files the docs cite, each by its own name (no wildcards); ``rnnkit bench``
    writes new results to runs/bench, outside the source tree."""
    root = SRC.parents[1]
    cited = "\n".join(p.read_text(encoding="utf-8") for p in [root / "README.md", *sorted((root / "docs").glob("*.md"))])
    results = sorted(p.name for p in (root / "benchmarks" / "results").iterdir())
    assert results, "benchmarks/results is empty"
    uncited = [name for name in results if name not in cited]
    assert uncited == [], f"benchmarks/results files no doc cites by name (cite them or remove them): {uncited}"


def test_no_module_lies_loose_but_the_base_helpers():
    """Every floor above the kernels is a folder; at the top of src/rnnkit/ stand only the package's face
    and the base helpers (user errors, the module protocol, the atomic writer, the version, the kernels)."""
    loose = sorted(p.stem for p in SRC.glob("*.py"))
    assert loose == ["__init__", "__main__", "_version", "atomic", "errors", "kernels", "module"], loose
    for floor, prefixes in FLOORS[2:]:
        for prefix in prefixes:
            if prefix != "rnnkit.__main__":
                assert (SRC.parent / prefix.replace(".", "/")).is_dir(), f"floor {floor}: {prefix} is not a folder"
