"""benchmarks/benchmarks (the asv history): every benchmark sets up and runs once on this code, and
asv_compare.sh is the command docs/performance.md documents (no timing assertions here)."""
import importlib.util
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
ASV = ROOT / "benchmarks" / "benchmarks"


def _module(name):
    spec = importlib.util.spec_from_file_location(f"asv_{name}", ASV / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_grid_is_the_issues_and_each_cell_runs_at_the_smallest_point():
    layers = _module("layers")
    assert layers.GRID == ["(100, 32, 64, 128)", "(50, 64, 128, 256)", "(35, 20, 650, 650)", "(64, 128, 256, 512)"]
    for cell in layers.CELLS:
        b = layers.Grid()
        b.setup(cell, "(3, 2, 4, 5)")  # same code path, a tiny shape
        b.time_fwd_bptt(cell, "(3, 2, 4, 5)")
        b.time_inference(cell, "(3, 2, 4, 5)")
        assert b.layer.grads["weight_hh_l0"].any(), f"{cell}: time_fwd_bptt ran no backward"
        n = layers.GridNoTape()
        n.setup(cell, "(3, 2, 4, 5)")
        n.time_inference_no_tape(cell, "(3, 2, 4, 5)")
        s = layers.Streaming()
        s.setup(cell, 4)
        s.time_step(cell, 4)


@pytest.mark.slow
def test_the_training_steps_run():
    training = _module("training")
    for cls in (training.CharLMStep, training.Seq2SeqStep):
        b = cls()
        b.setup()
        before = b.trainer.step
        b.time_train_step()
        assert b.trainer.step == before + 1, f"{cls.__name__}: time_train_step took no step"


def test_the_documented_compare_command_exists():
    script = ROOT / "benchmarks" / "asv_compare.sh"
    assert script.stat().st_mode & 0o111, "benchmarks/asv_compare.sh is not executable"
    assert "benchmarks/asv_compare.sh" in (ROOT / "docs" / "performance.md").read_text(encoding="utf-8")
