"""The fuzz harnesses (fuzz/): every crash input the fuzzer found, saved under fuzz/regressions/NAME/,
and every seed under fuzz/corpus/NAME/, gives success or rnnkit's UserError only; and each harness
runs under atheris for a few seconds without a crash (slow; ``make fuzz`` runs 10 s each)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "fuzz"))
from targets import TARGETS, run_one  # noqa: E402


def _inputs(folder: str):
    for name in TARGETS:
        d = ROOT / "fuzz" / folder / name
        for p in sorted(d.iterdir()) if d.is_dir() else ():
            yield pytest.param(name, p, id=f"{name}/{p.name}")


def test_every_harness_has_seeds():
    for name in TARGETS:
        assert any((ROOT / "fuzz" / "corpus" / name).iterdir()), f"fuzz/corpus/{name}: no seed"


@pytest.mark.parametrize("name,path", list(_inputs("regressions")) + list(_inputs("corpus")))
def test_saved_inputs_give_only_user_errors(tmp_path, name, path):
    run_one(name, path.read_bytes(), str(tmp_path))  # a crash raises here


@pytest.mark.slow
@pytest.mark.parametrize("name", list(TARGETS))
def test_a_short_fuzz_run_finds_no_crash(tmp_path, name):
    pytest.importorskip("atheris")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
    run = subprocess.run([sys.executable, str(ROOT / "fuzz" / "run.py"), name, "-max_total_time=3"], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and "DONE" in run.stderr, f"fuzz {name}:\n{run.stderr[-3000:]}"
    assert not list(tmp_path.glob("crash-*")), f"fuzz {name}: crash input in {tmp_path}"
