"""The command line's default thread count: the cores free when the run starts (engine.threads.free_cores)."""
import argparse
import os

import pytest

from rnnkit.cli.train import train_config_from_args
from rnnkit.engine import threads


@pytest.mark.parametrize("cpus, load, want", [(2, 0.1, 2), (2, 0.6, 1), (2, 10.0, 1), (16, 10.2, 6), (16, 0.0, 8)])
def test_free_cores_is_the_cores_less_the_load(monkeypatch, cpus, load, want):
    monkeypatch.setattr(os, "cpu_count", lambda: cpus)
    monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))
    monkeypatch.setattr(threads, "available_cores", lambda: min(cpus, 8))  # an affinity of at most 8
    assert threads.free_cores() == want, f"free_cores with {cpus} cpus at load {load}"


def test_cli_default_is_free_cores_and_a_given_flag_wins(monkeypatch):
    monkeypatch.setattr("rnnkit.cli.train.free_cores", lambda: 3)
    assert train_config_from_args(argparse.Namespace(blas_threads=None)).blas_threads == 3
    assert train_config_from_args(argparse.Namespace(blas_threads=0)).blas_threads == 0
    assert train_config_from_args(argparse.Namespace(blas_threads=1)).blas_threads == 1
