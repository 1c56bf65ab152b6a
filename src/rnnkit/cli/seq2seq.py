"""``rnnkit train seq2seq``, ``rnnkit translate CKPT`` and the seq2seq side of ``rnnkit eval``."""
from __future__ import annotations

import os
import sys

from rnnkit.errors import UserError
from rnnkit.io.outputs import check_output
from rnnkit.engine.layer_types import cell_label
from rnnkit.train.plots import plot_attention
from rnnkit.tasks.seq2seq import BLEU_TOKENIZE, SCORES, Seq2SeqTask, Seq2SeqTaskConfig
from rnnkit.train import load_task, read_metrics
from rnnkit.cli.args import nonneg_float, nonneg_int, positive_int
from rnnkit.cli.textargs import add_encoder_flags, add_token_flags, read_input, report_val
from rnnkit.cli.train import TaskSpec

_PATHS = ("src", "tgt", "pairs", "val_src", "val_tgt", "test_src", "test_tgt")


def metrics_line(m: dict) -> str:
    """loss, perplexity, exact match and BLEU of one evaluate() dict."""
    bleu = f"  BLEU {m['bleu']:.6f}" if "bleu" in m else "  BLEU not computed (pip install sacrebleu)"
    return (f"loss {m['loss']:.4f} nats/token  perplexity {m['perplexity']:.4f}  "
            f"exact match {100 * m['exact_match']:.2f} %{bleu}")


def throughput(trainer, res) -> str:
    """", N target tokens/s": the mean training throughput of this call (metrics.jsonl, evaluations excluded)."""
    if not trainer.log_path or not res.losses:
        return ""
    first = res.step - len(res.losses)
    rates = [r["tokens_per_s"] for r in read_metrics(trainer.log_path) if "tokens_per_s" in r and r["step"] > first]
    return f", {sum(rates) / len(rates):,.0f} target tokens/s" if rates else ""


class Seq2SeqSpec(TaskSpec):
    name, task_class, config_class = "seq2seq", Seq2SeqTask, Seq2SeqTaskConfig
    help = "sequence to sequence: encoder-decoder with attention (default corpus: dates -> ISO)"
    description = ("Train an encoder-decoder with attention on a parallel corpus: --src/--tgt line-aligned files or "
                   "--pairs FILE.tsv; without them, human-readable dates -> ISO 8601 (generated, held-out days). "
                   "Evaluations report loss, perplexity, exact match (greedy) and sacreBLEU.")

    def add_flags(self, p) -> None:
        d = Seq2SeqTaskConfig()
        g = p.add_argument_group("corpus")
        g.add_argument("--src", metavar="FILE", help="training sources, one sentence per line")
        g.add_argument("--tgt", metavar="FILE", help="training targets, line-aligned with --src")
        g.add_argument("--pairs", metavar="FILE", help="training pairs source<TAB>target (extra columns ignored)")
        for split in ("val", "test"):
            for side in ("src", "tgt"):
                g.add_argument(f"--{split}-{side}", dest=f"{split}_{side}", metavar="FILE",
                               help=f"{split} {'sources' if side == 'src' else 'targets'} (default: 5 %% of "
                                    f"the training pairs)")
        g.add_argument("--skip-empty", dest="skip_empty", action="store_const", const=True,
                       help="drop pairs with an empty side (default: an empty line is an error)")
        g.add_argument("--dates", type=positive_int, help=f"training pairs of the default dates corpus "
                                                          f"(default {d.dates})")
        g = add_token_flags(p, d)
        g.add_argument("--max-src-len", dest="max_src_len", type=nonneg_int,
                       help="drop training pairs whose source has more tokens, 0 = no limit (default 0)")
        g.add_argument("--max-tgt-len", dest="max_tgt_len", type=nonneg_int,
                       help="drop training pairs whose target has more tokens, 0 = no limit (default 0)")
        g = add_encoder_flags(p, d)
        g.add_argument("--score", choices=SCORES, help=f"attention score (default {d.score})")
        g.add_argument("--label-smoothing", dest="label_smoothing", type=nonneg_float,
                       help=f"in [0, 1) (default {d.label_smoothing})")

    def given(self, args) -> dict:
        given = super().given(args)
        return {k: os.path.abspath(v) if k in _PATHS else v for k, v in given.items()}

    def describe(self, task, trainer) -> None:
        c, sizes = task.config, task.sizes
        n = task.skipped
        empty = f"; skipped {n} pair{'s' * (n != 1)} with an empty side" if n else ""
        print(f"corpus: {c.corpus}: train/val/test {sizes['train']:,}/{sizes['val']:,}/{sizes['test']:,} pairs{empty}")
        if task.filter_report is not None:
            print(f"length filter (train): {task.filter_report}")
        print(f"tokens: {c.tokens}{' (lower-cased)' if c.lower else ''}; vocabulary source {len(task.src_vocab):,}, "
              f"target {len(task.tgt_vocab):,} (with 4 specials)")
        enc = ("bidirectional " if c.bidirectional else "") + f"{cell_label(c)} {c.layers}x{c.hidden}"
        print(f"model: encoder {enc}, decoder {cell_label(c)} {c.layers}x{c.hidden}, attention {c.score}, "
              f"embedding {c.emb}; {task.model.num_params():,} parameters; batch {c.batch}, "
              f"{trainer.config.steps} steps")

    def report_eval(self, task, trainer, rec) -> None:
        report_val(trainer, rec, metrics_line)

    def finish(self, task, trainer, res, args) -> None:
        print(f"stopped at step {res.step} ({res.stop_reason}) after {res.seconds:.0f} s{throughput(trainer, res)}")
        if res.losses:
            m = task.evaluate("test")
            print(f"test ({int(m['pairs']):,} pairs, greedy): {metrics_line(m)}")
        print(f"checkpoint: {res.checkpoint}")

    def plot_labels(self, task) -> tuple[str, str]:
        c = task.config
        return f"seq2seq ({cell_label(c)} {c.layers}x{c.hidden}, {c.score} attention)", "cross-entropy (nats/token)"

    def evaluate(self, task, args, path) -> None:
        if args.text:
            raise UserError("eval: --text is not supported for a seq2seq checkpoint; use rnnkit translate --input FILE")
        split = args.split or "val"
        m = task.evaluate(split)
        print(f"{split} split: {int(m['pairs']):,} pairs (greedy decoding); {metrics_line(m)}"
              + (f"  (sacreBLEU tokenize={BLEU_TOKENIZE})" if "bleu" in m else ""))


def _translate(args) -> int:
    if args.attention_plot:  # before any work
        check_output(args.attention_plot, "png", reads=[args.checkpoint, args.input], what="--attention-plot")
    task = load_task(args.checkpoint, Seq2SeqTask)
    lines = read_input(args.input)
    outs, hyps = task.translate(lines, beam=args.beam, max_len=args.max_len)
    for s in outs:
        print(s)
    if args.attention_plot:
        first = next((k for k, h in enumerate(hyps) if h is not None), None)
        if first is None:
            raise UserError("--attention-plot: no non-empty input line to plot")
        h = hyps[first]
        png = plot_attention(h.attention, task.source_tokens(lines[first]), task.target_tokens(h), args.attention_plot,
                             title=f"{lines[first]!r} -> {outs[first]!r}")
        print(f"attention plot (line {first + 1}): {png}" if png else
              "attention plot: not written (matplotlib is not installed)", file=sys.stderr)
    return 0


def register(root) -> None:
    """``rnnkit translate``."""
    t = root.add_parser("translate", help="decode lines with a seq2seq checkpoint",
                        description="Translate lines (standard input or --input FILE) with a seq2seq checkpoint; "
                                    "one output line per input line.")
    t.add_argument("checkpoint", metavar="CKPT")
    t.add_argument("--input", metavar="FILE", help="UTF-8 file, one sentence per line (default: standard input)")
    t.add_argument("--beam", type=positive_int, default=1, help="beam size; 1 = greedy decoding (default 1)")
    t.add_argument("--max-len", dest="max_len", type=positive_int, default=None,
                   help="most tokens per output (default: 1.5 x the longest training target, at least +10)")
    t.add_argument("--attention-plot", dest="attention_plot", metavar="PNG",
                   help="heat map of the attention weights (source x output) of the first non-empty line")
    t.set_defaults(func=_translate)
