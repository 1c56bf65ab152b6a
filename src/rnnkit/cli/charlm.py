"""``rnnkit train charlm``, ``rnnkit sample`` and the char-LM side of ``rnnkit eval``."""
from __future__ import annotations

import math

from rnnkit.data.text import DEFAULT_MAX_CHARS, load_text
from rnnkit.engine.layer_types import cell_label
from rnnkit.tasks.charlm import REGULARIZERS, CharLM, CharLMConfig
from rnnkit.cli.args import nonneg_int, positive_int
from rnnkit.cli.train import TaskSpec, stopped_line


def describe_charlm(lm: CharLM) -> None:
    """Two lines: the corpus and its split, the model."""
    src = lm.source
    what = (f"{src['path']}" if src.get("source") == "file" else
            f"Python standard library .py files (first {src.get('max_chars')} chars)")
    sizes = {k: len(v) for k, v in lm.splits.items()}
    c = lm.config
    print(f"corpus: {what}: {src.get('chars')} chars, vocabulary {len(lm.vocab)}, "
          f"train/val/test {sizes['train']}/{sizes['val']}/{sizes['test']}")
    rates = ", ".join(f"{n.replace('_', ' ')} {getattr(c, n)}" for n in REGULARIZERS if getattr(c, n))
    print(f"model: {cell_label(c)} {c.layers}x{c.hidden}, embedding {c.emb}, {lm.model.num_params():,} parameters; "
          f"batch {c.batch} x bptt {c.bptt}" + (f"; {rates}" if rates else ""))


class CharLMSpec(TaskSpec):
    name, task_class, config_class = "charlm", CharLM, CharLMConfig
    help = "character-level language model"
    description = ("Train a character-level language model (truncated BPTT, 90/5/5 split). "
                   "Without --text the corpus is the Python standard library's .py files.")
    plot_title, plot_ylabel = "char-LM ({cell} {c.layers}x{c.hidden})", "cross-entropy (nats/char)"

    def add_flags(self, p) -> None:
        p.add_argument("--text", metavar="FILE",
                       help="UTF-8 text file (default: the Python standard library's .py files)")
        p.add_argument("--max-chars", dest="max_chars", type=positive_int, default=DEFAULT_MAX_CHARS,
                       help=f"size of the default corpus in characters (default {DEFAULT_MAX_CHARS})")
        super().add_flags(p)

    def new_task(self, config, args):
        return CharLM.from_file(args.text, config) if args.text else CharLM(config, max_chars=args.max_chars)

    def attach(self, task, args) -> None:
        if args.text:
            task.attach_text(load_text(args.text))

    def describe(self, task, trainer) -> None:
        describe_charlm(task)

    def report_eval(self, task, trainer, rec) -> None:
        from tqdm import tqdm

        tqdm.write(f"step {rec['step']:6d}  train {trainer.last_loss:.4f}  val {rec['val_loss']:.4f} nats/char "
                   f"= {rec['val_bpc']:.3f} bits/char")

    def finish(self, lm, trainer, res, args) -> None:
        last = res.evals[-1] if res.evals else None
        if res.losses and (last is None or last["step"] != res.step):  # stopped between evaluations
            ev = lm.evaluate("val")
            last = {"step": res.step, "val_loss": ev["loss"], "val_bpc": ev["bpc"]}
        rate = (len(res.losses) * lm.config.batch * lm.config.bptt) / max(res.seconds, 1e-9)
        print(f"{stopped_line(res)}, {rate:,.0f} tokens/s")
        if last:
            best = f" (best {res.best_val:.4f} at an evaluation)" if math.isfinite(res.best_val) else ""
            print(f"val loss {last['val_loss']:.4f} nats/char = {last['val_bpc']:.3f} bits/char at step "
                  f"{last['step']}{best}")
        print(f"checkpoint: {res.checkpoint}")

    def evaluate(self, lm, args, path) -> None:
        """The split of the recorded corpus; with ``--text FILE`` the whole file, or with
        ``--split`` too that split of FILE (cut 90/5/5 like the training corpus), read in chunks."""
        if args.text:  # streamed in chunks with a progress bar: a corpus of any size
            ev = lm.evaluate_file(args.text, args.split, progress=True)
            where = args.text if args.split is None else f"{args.text} {args.split} split"
        else:
            ev = lm.evaluate(args.split or "val")
            where = f"{args.split or 'val'} split"
        print(f"{where}: {ev['chars']} chars, loss {ev['loss']:.4f} nats/char = {ev['bpc']:.3f} bits/char")


def _sample(args) -> int:
    lm = CharLM.load(args.checkpoint)
    print(args.prime + lm.sample(args.prime, args.length, args.temperature, args.seed))
    return 0


def register(root) -> None:
    """``rnnkit sample``."""
    s = root.add_parser("sample", help="generate text from a char-LM checkpoint",
                        description="Generate text from a char-LM checkpoint.")
    s.add_argument("checkpoint", metavar="CKPT")
    s.add_argument("--prime", default="", help="text to start from (default: a newline)")
    s.add_argument("--temperature", type=float, default=1.0, help="softmax temperature > 0 (default 1.0)")
    s.add_argument("--length", type=int, default=500, help="characters to generate (default 500)")
    s.add_argument("--seed", type=nonneg_int, default=None, help="sampling seed (default: random)")
    s.set_defaults(func=_sample)
