"""``rnnkit train asr``, ``rnnkit transcribe CKPT FILE...`` and the ASR side of ``rnnkit eval``."""
from __future__ import annotations

import sys
import time

from rnnkit.cli.args import nonneg_float, positive_float, positive_int
from rnnkit.cli.train import TaskSpec, stopped_line
from rnnkit.data.audio import read_audio
from rnnkit.data.manifest import read_manifest
from rnnkit.engine.layer_types import cell_label
from rnnkit.errors import UserError
from rnnkit.tasks.asr import ASRTask, ASRTaskConfig
from rnnkit.tasks.asr_data import TEXT_NORMALISATION
from rnnkit.tasks.asr_lm import CharLMScorer
from rnnkit.tasks.asr_stream import stream
from rnnkit.tasks.charlm import CharLM
from rnnkit.train import load_task, read_metrics

def metrics_line(m: dict) -> str:
    line = f"loss {m['loss']:.4f}  CER {100 * m['cer']:.2f} %  WER {100 * m['wer']:.2f} %"
    if "accuracy" in m:
        line += f"  isolated accuracy {100 * m['accuracy']:.2f} %"
    if "cer_connected" in m:
        line += f"  connected CER {100 * m['cer_connected']:.2f} %"
    return line


class ASRSpec(TaskSpec):
    name, task_class, config_class = "asr", ASRTask, ASRTaskConfig
    help = "speech recognition with CTC (default corpus: spoken digits, FSDD)"
    description = ("Train a recurrent CTC acoustic model on log-mel features: --manifest FILE (TSV path<TAB>text or "
                   "NeMo JSON lines); without one, spoken digits from --fsdd (isolated, official split, and "
                   "connected sequences).  Evaluations report CTC loss, CER and WER (greedy).")
    groups = ("corpus", "features", "model")
    plot_title = "asr ({cell} {c.layers}x{c.hidden}, CTC)"
    plot_ylabel = "CTC loss (nats/character)"
    text_hint = "; use rnnkit transcribe --manifest FILE"

    def train_config(self, args, base, task):
        """A new run on a manifest starts from ASRTask.manifest_train_defaults, spoken digits from train_defaults."""
        if base is None and task.config.manifest:
            base = ASRTask.manifest_train_defaults
        return super().train_config(args, base, task)

    def describe(self, task, trainer) -> None:
        c, n = task.config, task.notes
        corpus = c.manifest if c.manifest else f"spoken digits ({c.fsdd}): isolated + {c.connected} connected"
        print(f"corpus: {corpus}; train/val/test {task.sizes['train']:,}/{task.sizes['val']:,}/{task.sizes['test']:,} "
              f"utterances")
        for r, k in n.get("resampled", {}).items():
            print(f"resampled {k} file{'s' * (k != 1)} from {r} Hz to {c.rate} Hz")
        if n.get("skipped"):
            print(f"skipped {n['skipped']} unreadable audio file{'s' * (n['skipped'] != 1)} (--skip-bad-audio)")
        print(f"text normalisation: {TEXT_NORMALISATION}; alphabet {task.alphabet!r} + blank")
        print(f"features: {c.n_mels} log-mel, 25 ms / 10 ms at {c.rate} Hz, CMVN, stack {c.stack}, "
              f"SpecAugment {'on' if c.spec_augment else 'off'}, training speeds {c.speed_perturb}")
        enc = ("bidirectional " if c.bidirectional else "") + f"{cell_label(c)} {c.layers}x{c.hidden}"
        ema = trainer.config.ema
        average = f", evaluated as the moving average of the parameters (--ema {ema})" if ema else ""
        print(f"model: {enc} -> {len(task.alphabet) + 1} classes; {task.model.num_params():,} parameters; "
              f"batch {c.batch}, {trainer.config.steps} steps{average}")

    def report_eval(self, task, trainer, rec) -> None:
        from tqdm import tqdm

        m = {k[4:]: v for k, v in rec.items() if k.startswith("val_")}
        tqdm.write(f"step {rec['step']:6d}  train {trainer.last_loss:.4f}  val {metrics_line(m)}")

    def finish(self, task, trainer, res, args) -> None:
        rates = [r["tokens_per_s"] for r in read_metrics(trainer.log_path) if "tokens_per_s" in r] \
            if trainer.log_path else []
        speed = f", {sum(rates) / len(rates):,.0f} frames/s" if rates else ""
        print(f"{stopped_line(res)}{speed}")
        if task.infinite:
            print(f"impossible alignments (input shorter than its transcript): {task.infinite}, zeroed")
        if res.losses:
            print(f"test (greedy): {metrics_line(task.evaluate('test'))}")
        print(f"checkpoint: {res.checkpoint}")

    def evaluate(self, task, args, path) -> None:
        split = self.eval_split(task, args)
        m = task.evaluate(split)
        print(f"{split} split: {int(m['utterances']):,} utterances (greedy); {metrics_line(m)}")
        print(f"CER {100 * m['cer']:.2f} %")
        print(f"WER {100 * m['wer']:.2f} %")
        print("five worst utterances (CER, reference -> hypothesis):")
        for cer, name, ref, hyp in task.worst(split, 5):
            print(f"  {100 * cer:6.2f} %  {name}: {ref!r} -> {hyp!r}")


def _inputs(args) -> list:
    files = list(args.files)
    if args.manifest:
        files += [u.audio for u in read_manifest(args.manifest)]
    if not files:
        raise UserError("transcribe: give audio files or --manifest FILE")
    return files


def _transcribe(args) -> int:
    task = load_task(args.checkpoint, ASRTask)
    if args.lm is None and (args.lm_weight or args.bonus):
        raise UserError("transcribe: --lm-weight and --bonus need --lm CKPT")
    lm = CharLMScorer(load_task(args.lm, CharLM), task.alphabet) if args.lm else None
    decode = {"beam": args.beam, "lm": lm, "lm_weight": args.lm_weight, "bonus": args.bonus}
    for path in _inputs(args):
        x, from_rate = read_audio(path, task.config.rate)
        if from_rate is not None:
            print(f"{path}: resampled from {from_rate} Hz to {task.config.rate} Hz", file=sys.stderr)
        if args.stream:
            r = stream(task, x, args.chunk_ms / 1000.0,
                       on_partial=lambda text, s: print(f"  [{s:6.2f} s] {text}", file=sys.stderr))
            lat = sorted(r["latencies"])
            print(f"{path}: {len(lat)} chunks of {args.chunk_ms:g} ms; latency per chunk mean "
                  f"{1000 * sum(lat) / len(lat):.2f} ms, max {1000 * lat[-1]:.2f} ms; real-time factor "
                  f"{r['rtf']:.4f}", file=sys.stderr)
            print(r["text"])
            continue
        t0 = time.perf_counter()
        lp_x, lengths = task.prepare([x])
        task.model.eval()
        text = task.decode(task.model.forward(lp_x, lengths), lengths, **decode)[0]
        if args.timing:
            s = time.perf_counter() - t0
            print(f"{path}: {s:.3f} s for {x.size / task.config.rate:.2f} s of audio (real-time factor "
                  f"{s * task.config.rate / x.size:.4f})", file=sys.stderr)
        print(text)
    return 0


def register(root) -> None:
    """``rnnkit transcribe``."""
    t = root.add_parser("transcribe", help="speech to text with an asr checkpoint",
                        description="Transcribe audio files (WAV/FLAC; resampled to the model's rate) with an asr "
                                    "checkpoint: one line of text per input.")
    t.add_argument("checkpoint", metavar="CKPT")
    t.add_argument("files", metavar="FILE", nargs="*", help="audio files")
    t.add_argument("--manifest", metavar="FILE", help="transcribe the audio files of this manifest too")
    t.add_argument("--beam", type=positive_int, default=1, help="prefix beam search width; 1 = greedy (default 1)")
    t.add_argument("--lm", metavar="CKPT", help="char-LM checkpoint (rnnkit train charlm) for shallow fusion")
    t.add_argument("--lm-weight", dest="lm_weight", type=nonneg_float, default=0.0,
                   help="alpha: weight of the LM's log-probability (default 0)")
    t.add_argument("--bonus", type=float, default=0.0, help="beta: score added per character (default 0)")
    t.add_argument("--stream", action="store_true",
                   help="chunk by chunk through the step API (unidirectional model); partial text on stderr")
    t.add_argument("--chunk-ms", dest="chunk_ms", type=positive_float, default=200.0,
                   help="chunk length for --stream (default 200)")
    t.add_argument("--timing", action="store_true", help="print the time and real-time factor per file (stderr)")
    t.set_defaults(func=_transcribe)
