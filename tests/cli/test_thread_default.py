"""The command line's default thread count: the cores free when the run starts (engine.threads.free_cores)."""
import argparse
import os

import pytest

from rnnkit.cli.train import train_config_from_args
from rnnkit.engine import threads


@pytest.mark.parametrize("cpus, load, want", [(2, 0.1, 2), (2, 0.6, 1), (2, 10.0, 1), (16, 10.2, 6), (16, 0.0, 8)])
def test_free_cores_is_the_cores_less_the_load(monkeypatch, cpus, load, want):
    monkeypatch.setattr(os, "cpu_count", lambda: cpus)
    monkeypatch.setattr(threads, "busy_threads", lambda: load)
    monkeypatch.setattr(threads, "available_cores", lambda: min(cpus, 8))  # an affinity of at most 8
    assert threads.free_cores() == want, f"free_cores with {cpus} cpus at load {load}"


def test_busy_threads_are_the_median_runnable_count_less_the_reader(monkeypatch):
    readings = iter(["0.90 0.80 0.70 1/200 999\n", "0.90 0.80 0.70 3/200 999\n", "0.90 0.80 0.70 2/200 999\n",
                     "0.90 0.80 0.70 9/200 999\n", "0.90 0.80 0.70 1/200 999\n"])
    waits = []
    got = threads.busy_threads(read=lambda: next(readings), sleep=waits.append)
    assert got == 1, "median of 0, 2, 1, 8, 0 others (the reader not counted), not the 1-minute load 0.90"
    assert waits == [0.01] * 4


def test_busy_threads_fall_back_to_the_load_average_without_proc(monkeypatch):
    monkeypatch.setattr(os, "getloadavg", lambda: (3.5, 1.0, 1.0))
    assert threads.busy_threads(read=lambda: None) == 3.5


def test_cli_default_is_free_cores_and_a_given_flag_wins(monkeypatch):
    monkeypatch.setattr("rnnkit.cli.train.free_cores", lambda: 3)
    assert train_config_from_args(argparse.Namespace(blas_threads=None)).blas_threads == 3
    assert train_config_from_args(argparse.Namespace(blas_threads=0)).blas_threads == 0
    assert train_config_from_args(argparse.Namespace(blas_threads=1)).blas_threads == 1


@pytest.mark.parametrize("var, value, pattern", [
    ("RNNKIT_GEMM_ROWS", "x", r"RNNKIT_GEMM_ROWS: expected an integer >= 0 or 'packed', got 'x'"),
    ("RNNKIT_PLAN", "bogus", r"RNNKIT_PLAN: expected one of one_thread, .* got 'bogus'"),
    ("RNNKIT_UNIT_SHARDS", "yes", r"RNNKIT_UNIT_SHARDS: expected one of on, off, got 'yes'"),
])
def test_a_bad_thread_setting_in_the_environment_is_one_line_and_exit_2(monkeypatch, capsys, tmp_path, text_file,
                                                                        var, value, pattern):
    from conftest import one_line_error
    from rnnkit.cli import main

    monkeypatch.setenv(var, value)
    rc = main(["train", "charlm", "--text", str(text_file), "--steps", "2", "--hidden", "8", "--emb", "4",
               "--batch", "2", "--bptt", "5", "--no-progress", "--out", str(tmp_path / "run")])
    one_line_error(capsys, rc, pattern)
