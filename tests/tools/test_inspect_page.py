"""Cell activation pages: embedded values, interpretable-unit ranking, and rendering in headless Chromium."""
import html.parser
import json
import re
import shutil
import subprocess

import numpy as np
import pytest

from rnnkit.diagnostics.inspect_page import DECIMALS, build_page, colour, rank_units, text_features

TEXT = 'KING:\nSay "yes" (or no),\nmy lord "now".\nAy.\n'


def _acts(rng, text=TEXT, H=6):
    f = text_features(text)
    acts = rng.uniform(-1, 1, (len(text), H))
    acts[:, 3] = np.tanh(0.2 * f["position in line"] - 1.0)  # monotone in position-in-line
    acts[:, 1] = 0.8 * f["inside quotes"] - 0.4 + 0.01 * rng.standard_normal(len(text))
    return acts


def _payload(page):
    m = re.search(r'<script id="rnnkit-data" type="application/json">(.*?)</script>', page, re.S)
    return json.loads(m.group(1))


def test_features_hand_checked():
    f = text_features('ab\n"c" (d)\n')
    assert f["position in line"].tolist() == [0, 1, 2, 0, 1, 2, 3, 4, 5, 6, 7]
    assert f["inside quotes"].tolist() == [0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0]
    assert f["inside parentheses"].tolist() == [0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 0]
    assert f["inside word"].tolist() == [1, 1, 0, 0, 1, 0, 0, 0, 1, 0, 0]


def test_ranking_picks_position_and_quote_units(rng):
    ranked = rank_units(_acts(rng), text_features(TEXT))
    assert ranked[0]["unit"] in (1, 3)
    by_unit = {r["unit"]: r for r in ranked}
    assert by_unit[3]["feature"] == "position in line" and by_unit[3]["r"] > 0.9
    assert by_unit[1]["feature"] == "inside quotes" and by_unit[1]["r"] > 0.99
    assert {ranked[0]["unit"], ranked[1]["unit"]} == {1, 3}


def test_page_embeds_the_activations_and_ranking(rng):
    acts = _acts(rng)
    names = [f"layer 1 c[{j}]" for j in range(acts.shape[1])]
    page = build_page(TEXT, acts, names, title="t")
    data = _payload(page)
    assert data["text"] == TEXT and data["names"] == names
    values = np.array(data["values"])
    assert values.shape == (acts.shape[1], len(TEXT))
    assert np.abs(values - acts.T).max() <= 0.5 * 10**-DECIMALS + 1e-12
    assert data["initial"] == rank_units(acts, text_features(TEXT))[0]["unit"]
    assert 'data-unit="3"' in page and "position in line" in page
    assert "http://" not in page and "https://" not in page  # self-contained, no network


def test_page_escapes_script_end_in_text(rng):
    text = "a</script><b>x"
    page = build_page(text, rng.uniform(-1, 1, (len(text), 2)))
    assert page.count("</script>") == 2  # only the two real script ends
    assert _payload(page)["text"] == text


def test_page_rejects_bad_shapes(rng):
    with pytest.raises(ValueError, match=r"acts: expected shape \(3, H\)"):
        build_page("abc", np.zeros((4, 2)))
    with pytest.raises(ValueError, match="names: expected 2 unit names"):
        build_page("abc", np.zeros((3, 2)), names=["a"])


class _Spans(html.parser.HTMLParser):
    """Collects <span class="ch"> elements inside #text: (text, data-v, style)."""

    def __init__(self):
        super().__init__()
        self.spans, self._cur, self.unit = [], None, None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "div" and a.get("id") == "text":
            self.unit = a.get("data-unit")
        if tag == "span" and a.get("class") == "ch":
            self._cur = [a.get("data-v"), a.get("style", ""), ""]

    def handle_data(self, data):
        if self._cur is not None:
            self._cur[2] += data

    def handle_endtag(self, tag):
        if tag == "span" and self._cur is not None:
            self.spans.append(tuple(self._cur))
            self._cur = None


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _render(url, tmp_path):
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", url]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    assert res.returncode == 0, res.stderr[-2000:]
    p = _Spans()
    p.feed(res.stdout)
    return p


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install -y chromium chromium-driver)")
@pytest.mark.parametrize("unit", [None, 4])
def test_page_renders_in_headless_chromium(rng, tmp_path, unit):
    acts = _acts(rng)
    path = tmp_path / "page.html"
    path.write_text(build_page(TEXT, acts), encoding="utf-8")
    url = path.as_uri() + ("" if unit is None else f"#unit={unit}")
    dom = _render(url, tmp_path)
    want_unit = rank_units(acts, text_features(TEXT))[0]["unit"] if unit is None else unit
    assert dom.unit == str(want_unit)
    assert len(dom.spans) == len(TEXT), "one coloured span per character"
    assert "".join(s[2] for s in dom.spans) == TEXT
    for k, (v, style, _) in enumerate(dom.spans):
        want = np.round(acts[k, want_unit], DECIMALS)
        assert abs(float(v) - want) < 1e-9, (k, v, want)
        assert f"background-color: {colour(want)}" in style, (k, style, colour(want))


# ----------------------------------------------------------------------------- rnnkit inspect
def _tiny_lm(tmp_path, cell="lstm"):
    from rnnkit.tasks.charlm import CharLM, CharLMConfig

    corpus = 'He said "hi" (twice).\nShe said "no".\n' * 4
    lm = CharLM(CharLMConfig(cell=cell, layers=2, hidden=6, emb=4, batch=2, bptt=8), text=corpus)
    path = tmp_path / "lm.safetensors"
    lm.save(path)
    text = tmp_path / "t.txt"
    text.write_text(corpus[:40])
    return lm, path, text


def _args(**kw):
    import argparse

    base = dict(cell=0, layer=1, what="c", max_chars=5000, gates=None)
    base.update(kw)
    return argparse.Namespace(**base)


def test_inspect_command_values_equal_the_model(tmp_path):
    """Page values: top layer h equals the layer's forward output; tanh(c) at the end equals the final state."""
    from rnnkit.cli.diagnostics import inspect_main

    lm, ckpt, text_path = _tiny_lm(tmp_path)
    text = text_path.read_text()
    emb = lm.model.emb.params["weight"][lm.vocab.encode(text)][:, None, :]
    out, (h_T, c_T) = lm.model.rnn.forward(emb)
    page_h, page_c = tmp_path / "h.html", tmp_path / "c.html"
    assert inspect_main(_args(checkpoint=str(ckpt), text=str(text_path), layer=2, what="h", cell=3,
                              out=str(page_h))) == 0
    assert inspect_main(_args(checkpoint=str(ckpt), text=str(text_path), layer=1, what="c", out=str(page_c),
                              gates=str(tmp_path / "g"))) == 0
    dh, dc = _payload(page_h.read_text()), _payload(page_c.read_text())
    assert dh["initial"] == 3 and dh["text"] == text and dh["names"][0] == "layer 2 h[0]"
    assert np.abs(np.array(dh["values"]).T - out[:, 0]).max() <= 0.5e-3 + 1e-6
    assert np.abs(np.array(dc["values"])[:, -1] - np.tanh(c_T[0, 0])).max() <= 0.5e-3 + 1e-6
    assert (tmp_path / "g.png").exists() and (tmp_path / "g.csv").read_text().count("\n") == 1 + 2 * 3 * 6


def test_inspect_command_clear_errors(tmp_path):
    from rnnkit.cli.diagnostics import inspect_main
    from rnnkit.errors import UserError

    _, ckpt, text_path = _tiny_lm(tmp_path, cell="gru")
    with pytest.raises(UserError, match="--what c: the checkpoint's cell is gru"):
        inspect_main(_args(checkpoint=str(ckpt), text=str(text_path), out=str(tmp_path / "p.html")))
    with pytest.raises(UserError, match=r"--cell: expected a unit in 0\.\.5, got 9"):
        inspect_main(_args(checkpoint=str(ckpt), text=str(text_path), what="h", cell=9, out=str(tmp_path / "p.html")))
    with pytest.raises(UserError, match=r"--layer: expected 1\.\.2"):
        inspect_main(_args(checkpoint=str(ckpt), text=str(text_path), what="h", layer=3, out=str(tmp_path / "p.html")))
    bad = tmp_path / "bad.txt"
    bad.write_text("zzz~")
    with pytest.raises(UserError, match="not in the model's vocabulary"):
        inspect_main(_args(checkpoint=str(ckpt), text=str(bad), what="h", out=str(tmp_path / "p.html")))
    with pytest.raises(UserError, match="--text: cannot read"):
        inspect_main(_args(checkpoint=str(ckpt), text=str(tmp_path / "missing.txt"), out=str(tmp_path / "p.html")))
