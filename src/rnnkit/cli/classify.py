"""``rnnkit train classify``, ``rnnkit classify CKPT`` and the classify side of ``rnnkit eval``."""
from __future__ import annotations

import os

from rnnkit.models.classifier import POOLINGS
from rnnkit.errors import UserError
from rnnkit.engine.layer_types import cell_label
from rnnkit.train.plots import plot_confusion
from rnnkit.tasks.classify import CLASS_WEIGHTS, ClassifyTask, ClassifyTaskConfig
from rnnkit.train import load_task
from rnnkit.cli.args import nonneg_int, positive_int
from rnnkit.cli.textargs import add_encoder_flags, add_token_flags, read_input, report_val
from rnnkit.cli.train import TaskSpec


def metrics_line(m: dict) -> str:
    return (f"loss {m['loss']:.4f}  accuracy {100 * m['accuracy']:.2f} %  macro F1 {m['macro_f1']:.4f}  "
            f"(majority class {100 * m['majority']:.2f} %)")


def print_report(task, split: str) -> dict:
    """Accuracy, per-class precision/recall/F1 and the confusion matrix of ``split``, as text."""
    r = task.report(split)
    print(f"{split} split: {int(r['examples']):,} examples; {metrics_line(r)}")
    width = max(12, *(len(c) for c in task.classes))
    print(f"{'class':<{width}} {'precision':>9} {'recall':>7} {'F1':>7} {'support':>8}")
    for i, c in enumerate(task.classes):
        print(f"{c:<{width}} {r['precision'][i]:9.3f} {r['recall'][i]:7.3f} {r['f1'][i]:7.3f} {r['support'][i]:8d}")
    print("confusion matrix (rows: true class, columns: predicted, in the order above):")
    for i, c in enumerate(task.classes):
        print(f"{c:<{width}} " + " ".join(f"{n:4d}" for n in r["confusion"][i]))
    return r


def corpus_name(c) -> str:
    return os.path.basename(c.data.rstrip("/")) if c.data else "standard-library lines by package"


class ClassifySpec(TaskSpec):
    name, task_class, config_class = "classify", ClassifyTask, ClassifyTaskConfig
    help = "sequence classification (default corpus: standard-library lines by package)"
    description = ("Train a recurrent sequence classifier on --data FILE.tsv (label<TAB>text) or --data DIR (one "
                   "file per class, one example per line); without --data, lines of the Python standard library "
                   "labelled by package.  80/10/10 stratified split; writes confusion.png (test split).")

    def add_flags(self, p) -> None:
        d = ClassifyTaskConfig()
        g = p.add_argument_group("corpus")
        g.add_argument("--data", metavar="FILE|DIR", help="label<TAB>text file, or a directory of one file per class")
        g.add_argument("--skip-empty", dest="skip_empty", action="store_const", const=True,
                       help="skip empty lines (default: an error)")
        g.add_argument("--per-class", dest="per_class", type=positive_int,
                       help=f"lines per package of the default corpus (default {d.per_class})")
        g = add_token_flags(p, d)
        g.add_argument("--max-len", dest="max_len", type=nonneg_int,
                       help=f"keep the first N tokens of a text, 0 = all (default {d.max_len})")
        g = add_encoder_flags(p, d)
        g.add_argument("--pooling", choices=POOLINGS, help=f"(default {d.pooling})")
        g.add_argument("--class-weights", dest="class_weights", choices=CLASS_WEIGHTS,
                       help=f"balanced: weight class c by N / (C n_c) (default {d.class_weights})")

    def given(self, args) -> dict:
        given = super().given(args)
        if "data" in given:
            given["data"] = os.path.abspath(given["data"])
        return given

    def describe(self, task, trainer) -> None:
        c = task.config
        counts = ", ".join(f"{k} {n}" for k, n in zip(task.classes, task.class_counts))
        print(f"corpus: {c.corpus}: {len(task.classes)} classes, train/val/test {task.sizes['train']:,}/"
              f"{task.sizes['val']:,}/{task.sizes['test']:,}" + (f" ({task.dropped} without tokens dropped)"
                                                                   if task.dropped else ""))
        print(f"training examples per class: {counts}")
        enc = ("bidirectional " if c.bidirectional else "") + f"{cell_label(c)} {c.layers}x{c.hidden}"
        print(f"model: {enc}, {c.tokens} tokens (vocabulary {len(task.vocab):,}), {c.pooling} pooling, class weights "
              f"{c.class_weights}; {task.model.num_params():,} parameters; batch {c.batch}, "
              f"{trainer.config.steps} steps")

    def report_eval(self, task, trainer, rec) -> None:
        report_val(trainer, rec, metrics_line)

    def finish(self, task, trainer, res, args) -> None:
        print(f"stopped at step {res.step} ({res.stop_reason}) after {res.seconds:.0f} s")
        if res.losses:
            r = print_report(task, "test")
            png = plot_confusion(r["confusion"], task.classes, os.path.join(trainer.out_dir, "confusion.png"),
                                 title=f"{corpus_name(task.config)}: test split, accuracy {100 * r['accuracy']:.1f} %")
            print(f"confusion matrix: {png}" if png else "confusion matrix: not plotted (matplotlib is not installed)")
        print(f"checkpoint: {res.checkpoint}")

    def plot_labels(self, task) -> tuple[str, str]:
        c = task.config
        return f"classifier ({cell_label(c)} {c.layers}x{c.hidden}, {c.pooling} pooling)", "cross-entropy (nats)"

    def evaluate(self, task, args, path) -> None:
        if args.text:
            raise UserError("eval: --text is not supported for a classify checkpoint; use rnnkit classify --input FILE")
        print_report(task, args.split or "val")


def _classify(args) -> int:
    task = load_task(args.checkpoint, ClassifyTask)
    labels, probs = task.top_k(read_input(args.input), args.top_k)
    for lab, p in zip(labels, probs):
        print("(no known token)" if lab is None else "  ".join(f"{c} {q:.3f}" for c, q in zip(lab, p)))
    return 0


def register(root) -> None:
    """``rnnkit classify``."""
    c = root.add_parser("classify", help="top-k labels of lines with a classify checkpoint",
                        description="Print the k most probable labels with their probabilities for each line of "
                                    "standard input or --input FILE.")
    c.add_argument("checkpoint", metavar="CKPT")
    c.add_argument("--input", metavar="FILE", help="UTF-8 file, one example per line (default: standard input)")
    c.add_argument("--top-k", dest="top_k", type=positive_int, default=3, help="labels per line (default 3)")
    c.set_defaults(func=_classify)
