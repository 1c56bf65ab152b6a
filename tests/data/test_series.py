"""Series data: Mackey-Glass, CSV loading errors, windows, splits, normalisation."""
import numpy as np
import pytest

from rnnkit.data.series import (
    Normalizer, load_csv_column, mackey_glass, make_windows, naive_forecast, rmse_mae, split_bounds,
    split_windows,
)
from rnnkit.errors import UserError


def test_mackey_glass_deterministic_and_satisfies_the_dde():
    a, b = mackey_glass(600), mackey_glass(600)
    assert np.array_equal(a, b)
    assert a.shape == (600,) and np.isfinite(a).all()
    assert 0.2 < a.min() < 0.6 and 1.1 < a.max() < 1.5  # the known range of the tau=17 attractor
    # the sampled series satisfies dx/dt = 0.2 x(t-17) / (1 + x(t-17)^10) - 0.1 x(t):
    # central differences at unit spacing match the right-hand side to O(h^2) of a smooth curve
    x = mackey_glass(6000, sample_every=0.1, discard=5000)  # same start time, 10x finer sampling
    t = np.arange(200, 5000)
    dxdt = (x[t + 1] - x[t - 1]) / 0.2
    xd = x[t - 170]
    rhs = 0.2 * xd / (1 + xd**10) - 0.1 * x[t]
    assert np.max(np.abs(dxdt - rhs)) < 2e-3
    # sample_every=1 is every 10th value of the fine series
    assert np.array_equal(x[::10], a)


def test_mackey_glass_is_chaotic_not_periodic():
    # two histories differing by 1e-6 diverge to O(0.1) within 3000 time units (positive Lyapunov exponent)
    d = np.abs(mackey_glass(3000) - mackey_glass(3000, x0=1.2 + 1e-6))
    assert d[:500].max() < 1e-3 and d[-500:].max() > 0.2


def test_windows_layout():
    s = np.arange(10.0)
    X, Y = make_windows(s, 3, 2)
    assert X.shape == (6, 3) and Y.shape == (6, 2)
    assert X[0].tolist() == [0, 1, 2] and Y[0].tolist() == [3, 4]
    assert X[-1].tolist() == [5, 6, 7] and Y[-1].tolist() == [8, 9]
    X, Y = make_windows(s, 3, 2, start=6, stop=9)  # targets inside [6, 9), inputs may reach back
    assert X.tolist() == [[3, 4, 5], [4, 5, 6]] and Y.tolist() == [[6, 7], [7, 8]]


def test_split_is_chronological_and_targets_never_shared():
    s = np.arange(100.0)
    sw = split_windows(s, 5, 3)
    b = split_bounds(100)
    assert b == {"train": (0, 70), "val": (70, 85), "test": (85, 100)}
    for name, (a, z) in b.items():
        Y = sw[name].Y
        assert Y.min() >= a and Y.max() < z
        assert np.array_equal(sw[name].X[:, -1] + 1, Y[:, 0])  # inputs end right before the targets
    assert len(sw["train"].X) == 70 - 5 - 3 + 1
    assert len(sw["test"].X) == 15 - 3 + 1


def test_normalizer_uses_train_only():
    s = np.concatenate([np.full(70, 1.0) + np.arange(70) % 2, np.full(30, 100.0)])
    n = Normalizer.fit(s[:70])
    assert n.mean == 1.5 and n.std == 0.5
    assert np.allclose(n.inverse(n.transform(s)), s)


def test_too_short_series_errors():
    with pytest.raises(UserError, match=r"has 7 values, shorter than window \+ horizon = 5 \+ 3 = 8"):
        split_windows(np.arange(7.0), 5, 3)
    with pytest.raises(UserError, match=r"20 values: too short to give the val split a window of 5 inputs \+ 4 targets"):
        split_windows(np.arange(20.0), 5, 4)


def test_naive_and_metrics():
    X = np.array([[1.0, 2.0], [3.0, 5.0]])
    P = naive_forecast(X, 3)
    assert P.tolist() == [[2, 2, 2], [5, 5, 5]]
    r, m = rmse_mae(P, np.array([[2.0, 4.0, 2.0], [5.0, 5.0, 8.0]]))
    assert np.allclose(r, [0.0, np.sqrt(2.0), np.sqrt(4.5)]) and np.allclose(m, [0.0, 1.0, 1.5])


def _write(tmp_path, text, name="d.csv", mode="w"):
    p = tmp_path / name
    if mode == "wb":
        p.write_bytes(text)
    else:
        p.write_text(text)
    return p


def test_csv_loads_column(tmp_path):
    p = _write(tmp_path, "date, temp ,rain\n2020,1.5,0\n2021,-2e1,1\n\n2022,3,2\n")
    assert load_csv_column(p, "temp").tolist() == [1.5, -20.0, 3.0]


def test_csv_errors(tmp_path):
    with pytest.raises(UserError, match="CSV file not found: .*nope.csv"):
        load_csv_column(tmp_path / "nope.csv", "x")
    p = _write(tmp_path, "a,b\n1,2\n")
    with pytest.raises(UserError, match=r"no column 'c'; available columns: 'a', 'b'"):
        load_csv_column(p, "c")
    p = _write(tmp_path, "a,b\n1,2\n3,abc\n", "n.csv")
    with pytest.raises(UserError, match=r"line 3: non-numeric value 'abc' in column 'b'"):
        load_csv_column(p, "b")
    p = _write(tmp_path, "a,b\n1,2\n3,\n", "m.csv")
    with pytest.raises(UserError, match=r"line 3: missing value in column 'b'"):
        load_csv_column(p, "b")
    p = _write(tmp_path, "a,b\n1,2\n3\n", "s.csv")
    with pytest.raises(UserError, match=r"line 3: missing value in column 'b'"):
        load_csv_column(p, "b")
    p = _write(tmp_path, "a,b\n1,nan\n", "f.csv")
    with pytest.raises(UserError, match=r"line 2: non-finite value 'nan'"):
        load_csv_column(p, "b")
    p = _write(tmp_path, "", "e.csv")
    with pytest.raises(UserError, match="empty CSV file"):
        load_csv_column(p, "b")
    p = _write(tmp_path, "a,b\n", "h.csv")
    with pytest.raises(UserError, match="column 'b' has no data rows"):
        load_csv_column(p, "b")
    p = _write(tmp_path, b"a,b\n1,\xff\xfe\n", "bin.csv", "wb")
    with pytest.raises(UserError, match="not a UTF-8 text file"):
        load_csv_column(p, "b")


def test_csv_with_bom_and_quotes(tmp_path):
    p = tmp_path / "bom.csv"
    p.write_bytes("\ufeffdate,value\n2020,\"1.25\"\n2021,2\n".encode("utf-8"))
    assert load_csv_column(p, "date").tolist() == [2020.0, 2021.0]
    assert load_csv_column(p, "value").tolist() == [1.25, 2.0]
    p = tmp_path / "nul.csv"
    p.write_bytes(b"a,b\n1,\x002\n")
    with pytest.raises(UserError, match="nul.csv: (malformed CSV|line 2: non-numeric)"):
        load_csv_column(p, "b")
