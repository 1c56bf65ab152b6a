"""``rnnkit train summarize``, ``rnnkit summarize CKPT`` and the summarisation side of ``rnnkit eval``."""
from __future__ import annotations

import argparse
import json

from rnnkit.cli.args import nonneg_float, nonneg_int, positive_int
from rnnkit.cli.seq2seq import throughput
from rnnkit.cli.textspec import TextSpec, encoder_label, load_best, read_input, say_plot
from rnnkit.engine.layer_types import cell_label
from rnnkit.errors import UserError
from rnnkit.tasks.rouge import ROUGE_TYPES, rouge_line
from rnnkit.tasks.summarize import SummarizeTask, SummarizeTaskConfig
from rnnkit.train import load_task
from rnnkit.train.plots import plot_attention

def _pick(m: dict, prefix: str = "", suffix: str = "") -> dict:
    return {t: m[f"{prefix}{t}{suffix}"] for t in ROUGE_TYPES}


def rouge_lines(m: dict) -> list:
    """The model's and the lead's ROUGE lines of one evaluate() dict (mean over references, and max
    when it differs)."""
    out = [f"ROUGE {rouge_line(_pick(m))}  (F1, mean over references)",
           f"lead  {rouge_line(_pick(m, 'lead_'))}  (first sentence, scored the same way)"]
    if any(m[f"{t}_max"] != m[t] for t in ROUGE_TYPES):
        out += [f"ROUGE {rouge_line(_pick(m, suffix='_max'))}  (F1, max over references)",
                f"lead  {rouge_line(_pick(m, 'lead_', '_max'))}  (max over references)"]
    return out


def metrics_line(m: dict) -> str:
    return (f"loss {m['loss']:.4f}  ROUGE-1/2/L {m['rouge1']:.2f}/{m['rouge2']:.2f}/{m['rougeL']:.2f} "
            f"(lead {m['lead_rouge1']:.2f}/{m['lead_rouge2']:.2f}/{m['lead_rougeL']:.2f})  "
            f"repeated trigrams {100 * m['repetition']:.1f} %")


class SummarizeSpec(TextSpec):
    name, task_class, config_class = "summarize", SummarizeTask, SummarizeTaskConfig
    help = "summarisation: pointer-generator with coverage, ROUGE beside the lead baseline"
    description = ("Train a pointer-generator with coverage (See et al. 2017) on documents with summaries: JSON lines "
                   "(--data, --val-data, --test-data with --src-field/--tgt-field/--ref-fields) or two line-aligned "
                   "files (--src/--tgt). Evaluations report ROUGE-1/2/L F1 (rouge-score, stemming) beside the "
                   "first-sentence lead baseline.")
    groups = ("corpus", "tokens", "model", "decoding")
    plot_title = "summarize ({cell} {c.layers}x{c.hidden}, copy {c.copy}, coverage {c.coverage})"
    plot_ylabel = "loss (nats/token)"
    text_hint = "; use rnnkit summarize --input FILE"
    metrics_line = staticmethod(metrics_line)
    speed = staticmethod(throughput)

    def describe(self, task, trainer) -> None:
        c, sizes = task.config, task.sizes
        cut = {s: d.truncated for s, d in task.data.items()}
        print(f"corpus: {c.corpus}: train/val/test {sizes['train']:,}/{sizes['val']:,}/{sizes['test']:,} documents")
        counts = ", ".join(f"{cut[s]:,} {s}" for s in ("train", "val", "test"))
        print(f"truncated to {c.max_src_len} tokens: {counts} documents")
        print(f"tokens: {c.tokens}{' (lower-cased)' if c.lower else ''}; vocabulary {len(task.vocab):,} "
              f"(shared, with 4 specials)")
        parts = [x for x, on in (("copy", c.copy), (f"coverage (lambda {c.cov_loss_weight})", c.coverage)) if on]
        print(f"model: encoder {encoder_label(c)}, decoder {cell_label(c)} {c.layers}x{c.hidden}, additive attention"
              f"{', ' + ' + '.join(parts) if parts else ''}, embedding {c.emb}; {task.model.num_params():,} "
              f"parameters; batch {c.batch}, {trainer.config.steps} steps")

    def test_report(self, task, trainer) -> None:
        """The test split of the best checkpoint (the lowest val loss) if there is one, else of the last step."""
        best = load_best(task, trainer)
        if best:
            print(f"test split of the best checkpoint ({best}, val loss {trainer.best_val:.4f}):")
        self.show_split(task, "test")

    def show_split(self, task, split: str) -> None:
        c = task.config
        m = task.evaluate(split, beam=c.beam)
        print(f"{split} split: {int(m['documents']):,} documents (beam {c.beam}, alpha {c.alpha}, "
              f"no-repeat-ngram {c.no_repeat_ngram}, min-len {c.min_len}); loss {m['loss']:.4f}; "
              f"repeated trigrams {100 * m['repetition']:.1f} % of summaries")
        for line in rouge_lines(m):
            print(line)


def add_decoding_flags(g, d) -> None:
    """--beam, --alpha, --min-len, --no-repeat-ngram (defaults from ``d``)."""
    g.add_argument("--beam", type=positive_int, help=f"beam size, 1 = greedy (default {d.beam})")
    g.add_argument("--alpha", type=nonneg_float, help=f"length normalisation score / n^alpha (default {d.alpha})")
    g.add_argument("--min-len", dest="min_len", type=nonneg_int,
                   help=f"fewest tokens per summary (default {d.min_len})")
    g.add_argument("--no-repeat-ngram", dest="no_repeat_ngram", type=nonneg_int,
                   help=f"block repeating any n-gram, 0 = off (default {d.no_repeat_ngram})")


def _documents(args) -> list:
    lines = read_input(args.input)
    if not args.src_field:
        return lines
    docs = []
    where = args.input or "<stdin>"
    for k, row in enumerate(lines, start=1):
        if not row.strip():
            continue
        try:
            obj = json.loads(row)
        except json.JSONDecodeError as e:
            raise UserError(f"{where}:{k}: not valid JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(obj, dict) or not isinstance(obj.get(args.src_field), str):
            raise UserError(f"{where}:{k}: expected a JSON object with a string field {args.src_field!r}")
        docs.append(obj[args.src_field])
    return docs


def _summarize(args) -> int:
    task = load_task(args.checkpoint, SummarizeTask)
    docs = _documents(args)
    options = {k: getattr(args, k) for k in ("alpha", "min_len", "no_repeat_ngram") if getattr(args, k) is not None}
    outs, info = task.summarize(docs, beam=args.beam, max_len=args.max_len, **options)
    for s in outs:
        print(s)
    if args.attention_plot:
        first = next((k for k, i in enumerate(info) if i is not None), None)
        if first is None:
            raise UserError("--attention-plot: no non-empty document to plot")
        hyp, src_tokens, oovs, src_ids = info[first]
        p_gen = task.p_gen(src_ids, hyp)
        out_tokens = task.output_tokens(hyp, oovs) + (["<eos>"] if hyp.finished else [])
        if p_gen is not None:
            out_tokens = [f"{t} ({p:.2f})" for t, p in zip(out_tokens, p_gen)]
        png = plot_attention(hyp.attention, src_tokens, out_tokens, args.attention_plot,
                             title=f"document {first + 1}: attention (rows: output tokens, p_gen in brackets)")
        say_plot(f"attention plot (document {first + 1})", png)
    return 0


def register(root) -> None:
    """``rnnkit summarize``."""
    t = root.add_parser("summarize", help="summarise documents with a summarize checkpoint",
                        description="Summarise documents (standard input or --input FILE): plain lines, or JSON "
                                    "lines with --src-field; one summary a line out.")
    t.add_argument("checkpoint", metavar="CKPT")
    t.add_argument("--input", metavar="FILE", help="UTF-8 file, one document a line (default: standard input)")
    t.add_argument("--src-field", dest="src_field", help="read JSON lines and take the document from this field")
    add_decoding_flags(t, argparse.Namespace(beam="the model's", alpha="the model's", min_len="the model's",
                                             no_repeat_ngram="the model's"))
    t.add_argument("--max-len", dest="max_len", type=positive_int, default=None,
                   help="most tokens per summary (default: the model's, from the training summaries)")
    t.add_argument("--attention-plot", dest="attention_plot", metavar="PNG",
                   help="heat map of attention (document x summary) of the first document, p_gen per output token")
    t.set_defaults(func=_summarize)
