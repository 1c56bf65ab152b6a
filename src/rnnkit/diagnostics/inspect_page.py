"""Cell activation pages: colour each character of a text by one unit's activation.

After Karpathy, Johnson & Fei-Fei (2015), Fig. 2.  :func:`build_page` takes

    text:   str of N characters
    acts:   (N, H) activation of each unit after reading each character,
            e.g. tanh(c_t) or h_t of one LSTM layer, values in [-1, 1]
    names:  H unit names (default "unit 0" ...)

and returns one self-contained HTML page (inline CSS and JS, no network): the
text with every character's background coloured by the selected unit
(blue = -1, white = 0, red = +1), a unit selector (drop-down, slider, previous /
next buttons; ``page.html#unit=17`` opens unit 17), and a table of the most
interpretable units: those whose activation has the highest absolute Pearson
correlation with a simple text feature (:func:`text_features`).

The values are embedded rounded to 3 decimals (``DECIMALS``).
"""
from __future__ import annotations

import html
import json

import numpy as np

DECIMALS = 3

_FEATURE_DOC = {
    "position in line": "characters since the last newline",
    "inside quotes": "1 between an opening and a closing double quote",
    "inside parentheses": "1 inside (...) or [...]",
    "inside word": "1 on letters, 0 elsewhere",
    "end of line near": "characters until the next newline (negated distance)",
}


def text_features(text: str) -> dict[str, np.ndarray]:
    """Per-character features (N,) float64, named as in the page's table.

    position in line: chars since the last newline (0 at a line's first char)
    inside quotes:    1 from an opening '"' up to and including its closing '"'
    inside parentheses: nesting depth > 0 for ( ) and [ ] (brackets included)
    inside word:      1 on alphabetic characters
    end of line near: -(chars until the next newline)
    """
    N = len(text)
    pos = np.zeros(N)
    quote = np.zeros(N)
    paren = np.zeros(N)
    word = np.array([ch.isalpha() for ch in text], dtype=np.float64)
    col, in_q, depth = 0, False, 0
    for k, ch in enumerate(text):
        pos[k] = col
        col = 0 if ch == "\n" else col + 1
        if ch == '"':
            quote[k] = 1.0
            in_q = not in_q
        else:
            quote[k] = float(in_q)
        if ch in "([":
            depth += 1
        paren[k] = float(depth > 0)
        if ch in ")]" and depth > 0:
            depth -= 1
    to_eol = np.zeros(N)
    nxt = N
    for k in range(N - 1, -1, -1):
        if text[k] == "\n":
            nxt = k
        to_eol[k] = -(nxt - k)
    return {"position in line": pos, "inside quotes": quote, "inside parentheses": paren,
            "inside word": word, "end of line near": to_eol}


def correlations(acts: np.ndarray, features: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Pearson correlation (H,) of every unit with every feature; NaN where either is constant."""
    A = np.asarray(acts, dtype=np.float64)
    A = A - A.mean(axis=0)
    a_norm = np.sqrt((A * A).sum(axis=0))
    out = {}
    for name, f in features.items():
        f = np.asarray(f, dtype=np.float64) - np.mean(f)
        f_norm = np.sqrt((f * f).sum())
        with np.errstate(invalid="ignore", divide="ignore"):
            r = (f @ A) / (a_norm * f_norm)
        r[(a_norm == 0) | (f_norm == 0)] = np.nan
        out[name] = r
    return out


def rank_units(acts: np.ndarray, features: dict[str, np.ndarray], top: int = 20) -> list[dict]:
    """Units sorted by their best |correlation| over features.

    Returns up to ``top`` dicts {unit, feature, r}; units with no defined
    correlation are left out.
    """
    corr = correlations(acts, features)
    names = list(corr)
    R = np.stack([corr[n] for n in names])  # (F, H)
    absR = np.where(np.isnan(R), -1.0, np.abs(R))
    best = absR.argmax(axis=0)
    H = R.shape[1]
    ranked = sorted(range(H), key=lambda j: -absR[best[j], j])
    out = []
    for j in ranked[:top]:
        if absR[best[j], j] < 0:
            continue
        out.append({"unit": int(j), "feature": names[best[j]], "r": float(R[best[j], j])})
    return out


def colour(v: float) -> str:
    """Background colour of a value in [-1, 1]: blue (-1) .. white (0) .. red (+1).

    Same formula as the page's JS: t = Math.round(255 - 170 * min(|v|, 1)) (halves round up);
    the strongest colours stay light enough to read black text on.
    """
    t = int(np.floor(255 - 170 * min(abs(v), 1.0) + 0.5))
    return f"rgb(255, {t}, {t})" if v >= 0 else f"rgb({t}, {t}, 255)"


_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.2em; color: #222; }
#text { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 14px; line-height: 1.45;
        white-space: pre-wrap; border: 1px solid #ccc; padding: 0.6em; }
#text span.ch { border-radius: 2px; }
#controls { margin: 0.6em 0; display: flex; gap: 0.6em; align-items: center; flex-wrap: wrap; }
table { border-collapse: collapse; font-size: 13px; margin-top: 0.5em; }
td, th { border: 1px solid #ccc; padding: 2px 8px; text-align: left; }
tr.pick { cursor: pointer; } tr.pick:hover { background: #eef; }
tr.current { background: #dde; }
.legend span { display: inline-block; width: 3em; text-align: center; font-size: 12px; }
.note { color: #666; font-size: 13px; }
"""

_JS = r"""
(function () {
  const data = JSON.parse(document.getElementById('rnnkit-data').textContent);
  const text = data.text, values = data.values, names = data.names;
  const box = document.getElementById('text');
  const sel = document.getElementById('unit');
  const slider = document.getElementById('slider');
  const label = document.getElementById('label');
  function colour(v) {
    const t = Math.round(255 - 170 * Math.min(Math.abs(v), 1));
    return v >= 0 ? 'rgb(255, ' + t + ', ' + t + ')' : 'rgb(' + t + ', ' + t + ', 255)';
  }
  function show(u) {
    u = Math.max(0, Math.min(names.length - 1, u | 0));
    sel.value = String(u); slider.value = String(u);
    label.textContent = names[u];
    const vals = values[u];
    const frag = document.createDocumentFragment();
    for (let k = 0; k < text.length; k++) {
      const s = document.createElement('span');
      s.className = 'ch';
      s.textContent = text[k];
      s.dataset.v = vals[k].toFixed(data.decimals);
      s.title = names[u] + ' = ' + vals[k].toFixed(data.decimals);
      s.style.backgroundColor = colour(vals[k]);
      frag.appendChild(s);
    }
    box.replaceChildren(frag);
    box.dataset.unit = String(u);
    document.querySelectorAll('tr.pick').forEach(function (tr) {
      tr.classList.toggle('current', tr.dataset.unit === String(u));
    });
    if (location.hash !== '#unit=' + u) history.replaceState(null, '', '#unit=' + u);
  }
  names.forEach(function (n, u) {
    const o = document.createElement('option'); o.value = String(u); o.textContent = n; sel.appendChild(o);
  });
  slider.max = String(names.length - 1);
  sel.addEventListener('change', function () { show(+sel.value); });
  slider.addEventListener('input', function () { show(+slider.value); });
  document.getElementById('prev').addEventListener('click', function () { show(+sel.value - 1); });
  document.getElementById('next').addEventListener('click', function () { show(+sel.value + 1); });
  document.querySelectorAll('tr.pick').forEach(function (tr) {
    tr.addEventListener('click', function () { show(+tr.dataset.unit); });
  });
  const m = /unit=(\d+)/.exec(location.hash);
  show(m ? +m[1] : data.initial);
})();
"""


def build_page(text: str, acts: np.ndarray, names=None, title: str = "rnnkit cell activations",
               initial: int | None = None, top: int = 20, subtitle: str = "") -> str:
    """Self-contained HTML page; see the module docstring.

    text: N characters; acts: (N, H) finite values (clipped to [-1, 1] for colour only);
    names: H strings; initial: unit shown first (default: the most interpretable).
    """
    if not isinstance(text, str):
        raise TypeError(f"text: expected str, got {type(text).__name__}")
    acts = np.asarray(acts, dtype=np.float64)
    if acts.ndim != 2 or acts.shape[0] != len(text):
        raise ValueError(f"acts: expected shape ({len(text)}, H) (one row per character of text), "
                         f"got {acts.shape}")
    if not np.isfinite(acts).all():
        raise ValueError("acts: contains NaN or inf")
    H = acts.shape[1]
    if H < 1 or len(text) < 1:
        raise ValueError(f"acts: need at least one character and one unit, got shape {acts.shape}")
    names = [f"unit {j}" for j in range(H)] if names is None else [str(n) for n in names]
    if len(names) != H:
        raise ValueError(f"names: expected {H} unit names (one per column of acts), got {len(names)}")
    ranking = rank_units(acts, text_features(text), top=top)
    if initial is None:
        initial = ranking[0]["unit"] if ranking else 0
    if not 0 <= initial < H:
        raise ValueError(f"initial: expected a unit in 0..{H - 1}, got {initial}")
    values = np.round(acts.T, DECIMALS)
    data = {"text": text, "names": names, "decimals": DECIMALS, "initial": int(initial),
            "values": [[float(v) for v in row] for row in values]}
    # JSON inside <script>: escape '<' so text like "</script>" cannot end the element
    payload = json.dumps(data, separators=(",", ":")).replace("<", "\\u003c")
    rows = "\n".join(
        f'<tr class="pick" data-unit="{r["unit"]}"><td>{html.escape(names[r["unit"]])}</td>'
        f'<td>{html.escape(r["feature"])}</td><td>{r["r"]:+.3f}</td></tr>'
        for r in ranking
    )
    features = "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>" for k, v in _FEATURE_DOC.items())
    legend = "".join(f'<span style="background:{colour(v)}">{v:+g}</span>'.replace(">+0<", ">0<")
                     for v in (-1, -0.5, 0, 0.5, 1))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{html.escape(title)}</title>
<style>{_CSS}</style></head>
<body>
<h1>{html.escape(title)}</h1>
<p class="note">{html.escape(subtitle)} {len(text)} characters, {H} units.
Each character is coloured by the selected unit's value after reading it.</p>
<div class="legend">{legend}</div>
<div id="controls">
<button id="prev" type="button">&larr; previous</button>
<select id="unit" aria-label="unit"></select>
<input id="slider" type="range" min="0" value="0" step="1" aria-label="unit slider">
<button id="next" type="button">next &rarr;</button>
<b id="label"></b>
</div>
<div id="text"><noscript>This page needs JavaScript to colour the text.</noscript></div>
<h2>Most interpretable units</h2>
<p class="note">Highest |Pearson r| between the unit's value and a text feature; click a row to show it.</p>
<table id="ranking"><tr><th>unit</th><th>feature</th><th>r</th></tr>
{rows}
</table>
<ul class="note">{features}</ul>
<script id="rnnkit-data" type="application/json">{payload}</script>
<script>{_JS}</script>
</body></html>
"""
