"""``rnnkit train summarize``, ``rnnkit summarize CKPT`` and the summarisation side of ``rnnkit eval``."""
from __future__ import annotations

import argparse
import json
import os
import sys

from rnnkit.cli.args import nonneg_float, nonneg_int, positive_int
from rnnkit.cli.seq2seq import throughput
from rnnkit.cli.textspec import add_group_flags, read_input, report_val
from rnnkit.cli.train import TaskSpec
from rnnkit.engine.layer_types import cell_label
from rnnkit.errors import UserError
from rnnkit.tasks.rouge import ROUGE_TYPES, rouge_line
from rnnkit.tasks.summarize import SummarizeTask, SummarizeTaskConfig
from rnnkit.train import load_task
from rnnkit.train.plots import plot_attention

_PATHS = ("data", "val_data", "test_data", "src", "tgt", "val_src", "val_tgt", "test_src", "test_tgt")


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


class SummarizeSpec(TaskSpec):
    name, task_class, config_class = "summarize", SummarizeTask, SummarizeTaskConfig
    help = "summarisation: pointer-generator with coverage, ROUGE beside the lead baseline"
    text_hint = "; use rnnkit summarize --input FILE"
    description = ("Train a pointer-generator with coverage (See et al. 2017) on documents with summaries: JSON lines "
                   "(--data, --val-data, --test-data with --src-field/--tgt-field/--ref-fields) or two line-aligned "
                   "files (--src/--tgt). Evaluations report ROUGE-1/2/L F1 (rouge-score, stemming) beside the "
                   "first-sentence lead baseline.")

    def add_flags(self, p) -> None:
        d = SummarizeTaskConfig(data="-")
        g = p.add_argument_group("corpus")
        for split in ("", "val-", "test-"):
            g.add_argument(f"--{split}data", dest=f"{split.replace('-', '_')}data", metavar="FILE.jsonl",
                           help=f"{split[:-1] or 'training'} documents, JSON lines"
                                + ("" if not split else " (default: 5 %% of the training documents)"))
        g.add_argument("--src-field", dest="src_field", help=f"JSON field of the document (default {d.src_field})")
        g.add_argument("--tgt-field", dest="tgt_field", help=f"JSON field of the summary (default {d.tgt_field})")
        g.add_argument("--ref-fields", dest="ref_fields", metavar="A,B,C",
                       help="JSON fields of the references evaluations score against (default: the summary)")
        for split in ("", "val-", "test-"):
            for side, what in (("src", "documents"), ("tgt", "summaries")):
                g.add_argument(f"--{split}{side}", dest=f"{split.replace('-', '_')}{side}", metavar="FILE",
                               help=f"{split[:-1] or 'training'} {what}, one a line (the two-file layout)")
        g.add_argument("--skip-empty", dest="skip_empty", action="store_const", const=True,
                       help="drop rows with an empty document or summary (default: an error)")
        g = add_group_flags(p, d, "tokens")
        g.add_argument("--vocab", type=positive_int, help=f"most frequent tokens kept (default {d.vocab})")
        g.add_argument("--max-src-len", dest="max_src_len", type=positive_int,
                       help=f"truncate documents to their first N tokens (default {d.max_src_len})")
        g.add_argument("--max-tgt-len", dest="max_tgt_len", type=positive_int,
                       help=f"truncate training summaries to N tokens (default {d.max_tgt_len})")
        g = add_group_flags(p, d, "model")
        g.add_argument("--copy", action=argparse.BooleanOptionalAction, default=None,
                       help="pointer-generator copy mechanism (default: yes)")
        g.add_argument("--coverage", action=argparse.BooleanOptionalAction, default=None,
                       help="coverage in the attention and the coverage loss (default: yes)")
        g.add_argument("--cov-loss-weight", dest="cov_loss_weight", type=nonneg_float,
                       help=f"lambda of the coverage loss (default {d.cov_loss_weight})")
        g = p.add_argument_group("decoding (evaluations)")
        add_decoding_flags(g, d)
        g.add_argument("--val-beam", dest="val_beam", type=positive_int,
                       help=f"beam of the val evaluations during training (default {d.val_beam})")

    def given(self, args) -> dict:
        given = super().given(args)
        return {k: os.path.abspath(v) if k in _PATHS else v for k, v in given.items()}

    def describe(self, task, trainer) -> None:
        c, sizes = task.config, task.sizes
        cut = {s: d.truncated for s, d in task.data.items()}
        print(f"corpus: {c.corpus}: train/val/test {sizes['train']:,}/{sizes['val']:,}/{sizes['test']:,} documents")
        print(f"truncated to {c.max_src_len} tokens: " + ", ".join(f"{cut[s]:,} {s}" for s in ("train", "val", "test"))
              + " documents")
        print(f"tokens: {c.tokens}{' (lower-cased)' if c.lower else ''}; vocabulary {len(task.vocab):,} "
              f"(shared, with 4 specials)")
        enc = ("bidirectional " if c.bidirectional else "") + f"{cell_label(c)} {c.layers}x{c.hidden}"
        parts = [x for x, on in (("copy", c.copy), (f"coverage (lambda {c.cov_loss_weight})", c.coverage)) if on]
        print(f"model: encoder {enc}, decoder {cell_label(c)} {c.layers}x{c.hidden}, additive attention"
              f"{', ' + ' + '.join(parts) if parts else ''}, embedding {c.emb}; {task.model.num_params():,} "
              f"parameters; batch {c.batch}, {trainer.config.steps} steps")

    def report_eval(self, task, trainer, rec) -> None:
        report_val(trainer, rec, metrics_line)

    def finish(self, task, trainer, res, args) -> None:
        print(f"stopped at step {res.step} ({res.stop_reason}) after {res.seconds:.0f} s{throughput(trainer, res)}")
        if res.losses:
            self._report(task, "test", task.evaluate("test"))
        print(f"checkpoint: {res.checkpoint}")

    def _report(self, task, split, m) -> None:
        c = task.config
        print(f"{split} split: {int(m['documents']):,} documents (beam {c.beam}, alpha {c.alpha}, "
              f"no-repeat-ngram {c.no_repeat_ngram}, min-len {c.min_len}); loss {m['loss']:.4f}; "
              f"repeated trigrams {100 * m['repetition']:.1f} % of summaries")
        for line in rouge_lines(m):
            print(line)

    def plot_labels(self, task) -> tuple[str, str]:
        c = task.config
        what = "pointer-generator" + (" + coverage" if c.coverage else "") if c.copy else "attention" + (
            " + coverage" if c.coverage else "")
        return f"summarize ({what}, {cell_label(c)} {c.layers}x{c.hidden})", "loss (nats/token)"

    def evaluate(self, task, args, path) -> None:
        split = self.eval_split(task, args)
        self._report(task, split, task.evaluate(split, beam=task.config.beam))


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
        print(f"attention plot (document {first + 1}): {png}" if png else
              "attention plot: not written (matplotlib is not installed)", file=sys.stderr)
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
