"""What ``rnnkit train seq2seq`` / ``classify`` and ``translate`` / ``classify`` share: the token and
encoder flags (the fields of rnnkit.tasks.textdata.TextTaskConfig) and reading input lines."""
from __future__ import annotations

import argparse
import sys

from rnnkit.data.lines import decode_utf8, read_lines
from rnnkit.engine.layer_types import LAYERS
from rnnkit.tasks.textdata import TOKENS
from rnnkit.cli.args import positive_int
from rnnkit.cli.train import add_cell_flags


def add_token_flags(p, d):
    """The "tokens" group (returned): --tokens, --lower, --bpe-vocab, --min-freq; help shows ``d``'s defaults."""
    g = p.add_argument_group("tokens")
    g.add_argument("--tokens", choices=TOKENS, help=f"char, word (regex, punctuation split), space "
                                                    f"(pre-tokenised text) or bpe (default {d.tokens})")
    g.add_argument("--lower", action="store_const", const=True, help="lower-case the text first")
    g.add_argument("--bpe-vocab", dest="bpe_vocab", type=positive_int,
                   help=f"BPE pieces (per side; > 256, default {d.bpe_vocab})")
    g.add_argument("--min-freq", dest="min_freq", type=positive_int,
                   help=f"rarer tokens become <unk> (default {d.min_freq})")
    return g


def add_encoder_flags(p, d):
    """The "model" group with --cell (and the variants --peephole, --proj-size), --layers, --hidden, --emb,
    --(no-)bidirectional, --batch; returned for the task's own model flags."""
    g = p.add_argument_group("model")
    g.add_argument("--cell", choices=sorted(LAYERS), help=f"(default {d.cell})")
    add_cell_flags(g)
    g.add_argument("--layers", type=positive_int, help=f"recurrent layers (default {d.layers})")
    g.add_argument("--hidden", type=positive_int, help=f"hidden size per direction (default {d.hidden})")
    g.add_argument("--emb", type=positive_int, help=f"embedding size (default {d.emb})")
    g.add_argument("--bidirectional", action=argparse.BooleanOptionalAction, default=None,
                   help="bidirectional encoder (default: yes)")
    g.add_argument("--batch", type=positive_int, help=f"examples per step (default {d.batch})")
    return g


def read_input(path) -> list:
    """Lines of ``--input FILE`` or of standard input (UTF-8; a bad byte names the line)."""
    if path:
        return read_lines(path, "--input")
    text = decode_utf8(sys.stdin.buffer.read(), "<stdin>")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [s[:-1] if s.endswith("\r") else s for s in lines]


def report_val(trainer, rec: dict, metrics_line) -> None:
    """One evaluation line of a text task: ``step N  train L  val <metrics_line of the val_* fields>``."""
    from tqdm import tqdm

    m = {k[4:]: v for k, v in rec.items() if k.startswith("val_")}
    tqdm.write(f"step {rec['step']:6d}  train {trainer.last_loss:.4f}  val {metrics_line(m)}")
