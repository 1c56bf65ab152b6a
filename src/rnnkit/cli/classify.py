"""``rnnkit train classify``, ``rnnkit classify CKPT`` and the classify side of ``rnnkit eval``."""
from __future__ import annotations

import os

from rnnkit.train.plots import plot_confusion
from rnnkit.tasks.classify import ClassifyTask, ClassifyTaskConfig
from rnnkit.train import TrainConfig, load_task
from rnnkit.cli.train import add_train_args, train_config_from_args
from rnnkit.cli.args import positive_int
from rnnkit.cli.textspec import TextSpec, encoder_label, load_best, read_input


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


def train_plan(t: TrainConfig) -> str:
    """"evaluation every N steps, early stopping after P without a better val accuracy" (or off)."""
    every = f"evaluation every {t.eval_every} steps" if t.eval_every else "evaluation at the end"
    stop = f", early stopping after {t.patience} without a better val accuracy"
    return every + (stop if t.patience and t.eval_every else ", no early stopping")


class ClassifySpec(TextSpec):
    name, task_class, config_class = "classify", ClassifyTask, ClassifyTaskConfig
    help = "sequence classification (default corpus: standard-library lines by package)"
    description = ("Train a recurrent sequence classifier on --data FILE.tsv (label<TAB>text) or --data DIR (one "
                   "file per class, one example per line); without --data, lines of the Python standard library "
                   "labelled by package.  80/10/10 stratified split; writes confusion.png (test split).")
    plot_title, plot_ylabel = "classifier ({cell} {c.layers}x{c.hidden}, {c.pooling} pooling)", "cross-entropy (nats)"
    text_hint = "; use rnnkit classify --input FILE"
    metrics_line = staticmethod(metrics_line)

    def add_train_flags(self, p) -> None:
        add_train_args(p, self.train_defaults, {"steps": "--epochs passes over the training split",
                                                "eval_every": "once per epoch"})

    def train_config(self, args, base: TrainConfig | None, task) -> TrainConfig:
        """A new run: steps and evaluation cadence scaled with the corpus (ClassifyTask.scaled_train_config),
        then the flags; ``--resume``: the checkpoint's."""
        return train_config_from_args(args, base or task.scaled_train_config())

    def describe(self, task, trainer) -> None:
        c = task.config
        counts = ", ".join(f"{k} {n}" for k, n in zip(task.classes, task.class_counts))
        print(f"corpus: {c.corpus}: {len(task.classes)} classes, train/val/test {task.sizes['train']:,}/"
              f"{task.sizes['val']:,}/{task.sizes['test']:,}" + (f" ({task.dropped} without tokens dropped)"
                                                                   if task.dropped else ""))
        print(f"training examples per class: {counts}")
        print(f"model: {encoder_label(c)}, {c.tokens} tokens (vocabulary {len(task.vocab):,}), {c.pooling} pooling, "
              f"class weights {c.class_weights}; {task.model.num_params():,} parameters; batch {c.batch}, "
              f"{trainer.config.steps} steps ({trainer.config.steps / task.steps_per_epoch():.3g} epochs of "
              f"{task.steps_per_epoch()} steps), " + train_plan(trainer.config))

    def test_report(self, task, trainer) -> None:
        """The test split of the best checkpoint (the highest val accuracy) if there is one, else of the last step."""
        best = load_best(task, trainer)
        if best:
            print(f"test split of the best checkpoint ({best}, val accuracy {-100 * trainer.best_val:.2f} %):")
        r = print_report(task, "test")
        png = plot_confusion(r["confusion"], task.classes, os.path.join(trainer.out_dir, "confusion.png"),
                             title=f"{corpus_name(task.config)}: test split, accuracy {100 * r['accuracy']:.1f} %")
        print(f"confusion matrix: {png}" if png else "confusion matrix: not plotted (matplotlib is not installed)")

    def show_split(self, task, split: str) -> None:
        print_report(task, split)


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
