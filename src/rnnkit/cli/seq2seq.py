"""``rnnkit train seq2seq``, ``rnnkit translate CKPT`` and the seq2seq side of ``rnnkit eval``."""
from __future__ import annotations

from rnnkit.errors import UserError
from rnnkit.io.outputs import check_output
from rnnkit.engine.layer_types import cell_label
from rnnkit.train.plots import plot_attention
from rnnkit.tasks.seq2seq import BLEU_TOKENIZE, Seq2SeqTask, Seq2SeqTaskConfig
from rnnkit.train import load_task, read_metrics
from rnnkit.cli.args import positive_int
from rnnkit.cli.textspec import TextSpec, encoder_label, read_input, say_plot


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


class Seq2SeqSpec(TextSpec):
    name, task_class, config_class = "seq2seq", Seq2SeqTask, Seq2SeqTaskConfig
    help = "sequence to sequence: encoder-decoder with attention (default corpus: dates -> ISO)"
    description = ("Train an encoder-decoder with attention on a parallel corpus: --src/--tgt line-aligned files or "
                   "--pairs FILE.tsv; without them, human-readable dates -> ISO 8601 (generated, held-out days). "
                   "Evaluations report loss, perplexity, exact match (greedy) and sacreBLEU.")
    plot_title = "seq2seq ({cell} {c.layers}x{c.hidden}, {c.score} attention)"
    plot_ylabel = "cross-entropy (nats/token)"
    text_hint = "; use rnnkit translate --input FILE"
    metrics_line = staticmethod(metrics_line)

    def describe(self, task, trainer) -> None:
        c, sizes = task.config, task.sizes
        n = task.skipped
        empty = f"; skipped {n} pair{'s' * (n != 1)} with an empty side" if n else ""
        print(f"corpus: {c.corpus}: train/val/test {sizes['train']:,}/{sizes['val']:,}/{sizes['test']:,} pairs{empty}")
        if task.filter_report is not None:
            print(f"length filter (train): {task.filter_report}")
        print(f"tokens: {c.tokens}{' (lower-cased)' if c.lower else ''}; vocabulary source {len(task.src_vocab):,}, "
              f"target {len(task.tgt_vocab):,} (with 4 specials)")
        print(f"model: encoder {encoder_label(c)}, decoder {cell_label(c)} {c.layers}x{c.hidden}, attention "
              f"{c.score}, embedding {c.emb}; {task.model.num_params():,} parameters; batch {c.batch}, "
              f"{trainer.config.steps} steps")

    speed = staticmethod(throughput)

    def test_report(self, task, trainer) -> None:
        m = task.evaluate("test")
        print(f"test ({int(m['pairs']):,} pairs, greedy): {metrics_line(m)}")

    def show_split(self, task, split: str) -> None:
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
        say_plot(f"attention plot (line {first + 1})", png)
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
