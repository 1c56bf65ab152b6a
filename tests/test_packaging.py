"""rnnkit as a library: the wheel builds from a copy of the sources, holds every module and the
license, installs into a fresh virtual environment, and its ``rnnkit`` command runs there
(``--version`` and a tiny training run), so a file missing from the package is caught."""
import os
import pathlib
import shutil
import site
import subprocess
import sys
import sysconfig
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_version_is_defined_once():
    import rnnkit
    from rnnkit._version import __version__

    assert rnnkit.__version__ == __version__
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert 'dynamic = ["version"]' in text and 'version = {attr = "rnnkit._version.__version__"}' in text
    assert 'license = "MIT"' in text and (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert f"## {__version__}" in (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")


@pytest.mark.slow
def test_wheel_installs_into_a_fresh_venv_and_runs(tmp_path):
    build_meta = pytest.importorskip("setuptools.build_meta")  # the build backend of pyproject.toml
    from rnnkit._version import __version__

    # build from a copy: the build writes build/ and *.egg-info next to the sources
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "src" / "rnnkit", src / "src" / "rnnkit", ignore=shutil.ignore_patterns("__pycache__"))
    cwd = os.getcwd()
    try:
        os.chdir(src)
        wheel = src / "dist" / build_meta.build_wheel(str(src / "dist"))
    finally:
        os.chdir(cwd)
    assert wheel.name == f"rnnkit-{__version__}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
    want = {p.relative_to(ROOT / "src").as_posix() for p in (ROOT / "src" / "rnnkit").rglob("*.py")}
    assert want - names == set(), f"modules missing from the wheel: {sorted(want - names)}"
    assert f"rnnkit-{__version__}.dist-info/licenses/LICENSE" in names

    # a fresh venv; its dependencies (numpy, numba, ...) come from this environment's site-packages
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    py = venv / "bin" / "python"
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], *site.getsitepackages()}
    pathlib.Path(purelib, "_deps.pth").write_text("\n".join(sorted(deps)) + "\n")
    r = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps", "--no-index",
                        str(wheel)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    where = subprocess.run([str(py), "-c", "import rnnkit; print(rnnkit.__file__)"], capture_output=True, text=True,
                           env=env, cwd=tmp_path, timeout=60)
    assert where.stdout.strip().startswith(purelib), where.stdout + where.stderr  # the installed copy, not src/

    rnnkit = str(venv / "bin" / "rnnkit")
    r = subprocess.run([rnnkit, "--version"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == f"rnnkit {__version__}", r.stdout + r.stderr
    r = subprocess.run([rnnkit, "train", "adding", "--T", "11", "--hidden", "3", "--batch", "4", "--max-sequences", "8",
                        "--eval-every", "8", "--no-progress", "--out", str(tmp_path / "run")],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "after 8 training sequences (2 steps" in r.stdout and (tmp_path / "run" / "last.safetensors").exists()
