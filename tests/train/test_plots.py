"""rnnkit.train.plots.plot_runs: several runs in one PNG (issue 13's results figure)."""
import pytest

from rnnkit.train.plots import plot_runs


def test_plot_runs_writes_one_png_with_every_run(tmp_path):
    plt = pytest.importorskip("matplotlib.image")
    runs = {"a": ([(1, 2.0), (2, 1.5)], [(2, 1.8)]), "b": ([(1, 2.1), (2, 1.4)], [(2, 1.9)])}
    png = plot_runs(runs, tmp_path / "runs.png", "two runs", ymax=2.5)
    assert png == str(tmp_path / "runs.png")
    img = plt.imread(png)
    assert img.shape[:2] == (550, 880), f"figure pixels {img.shape}"
    assert not list(tmp_path.glob("*.tmp*")), "temp file left behind"


def test_plot_runs_without_matplotlib_returns_none(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_mpl(name, *a, **k):
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_mpl)
    assert plot_runs({"a": ([], [(1, 1.0)])}, tmp_path / "x.png", "t") is None
    assert not (tmp_path / "x.png").exists()
