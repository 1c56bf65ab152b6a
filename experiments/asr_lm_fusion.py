"""Shallow fusion on spoken digits: CER of one ASR checkpoint's test split decoded greedily, with
prefix beam search, and with beam search + an rnnkit char-LM (``rnnkit train charlm``) at several
weights.  The char-LM is trained here on the transcripts of the ASR training split (connected
digit sequences, one per line) unless ``--lm CKPT`` is given.

    python experiments/asr_lm_fusion.py runs/asr/best.safetensors [--lm CKPT] [--beam 8]

Prints a Markdown table: decoding, LM weight alpha, bonus beta, test CER, connected CER, WER.
"""
from __future__ import annotations

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(HERE, "..", "src")]

from rnnkit.cli import main as rnnkit_main  # noqa: E402
from rnnkit.tasks.asr import ASRTask  # noqa: E402
from rnnkit.tasks.asr_lm import CharLMScorer  # noqa: E402
from rnnkit.tasks.charlm import CharLM  # noqa: E402
from rnnkit.train import load_task  # noqa: E402


def train_lm(task, out: str, steps: int) -> str:
    d = task.data["train"]
    text = "\n".join(t for t, iso in zip(d.texts, d.isolated) if not iso) + "\n"
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "digits.txt")
    with open(path, "w", encoding="utf-8") as f:
        f.write(text * 3)
    code = rnnkit_main(["train", "charlm", "--text", path, "--steps", str(steps), "--hidden", "64", "--batch", "16",
                        "--bptt", "32", "--no-progress", "--out", os.path.join(out, "lm")])
    if code:
        raise SystemExit(code)
    return os.path.join(out, "lm", "best.safetensors")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("checkpoint")
    p.add_argument("--lm")
    p.add_argument("--lm-steps", type=int, default=600)
    p.add_argument("--beam", type=int, default=8)
    p.add_argument("--out", default="runs/asr_lm_fusion")
    p.add_argument("--weights", default="0.25,0.5,1.0")
    p.add_argument("--bonus", type=float, default=0.5)
    args = p.parse_args()
    task = load_task(args.checkpoint, ASRTask)
    lm_path = args.lm or train_lm(task, args.out, args.lm_steps)
    lm = CharLMScorer(load_task(lm_path, CharLM), task.alphabet)
    rows = [("greedy", "-", "-", {}), (f"beam {args.beam}", "0", "0", {"beam": args.beam})]
    for w in args.weights.split(","):
        rows.append((f"beam {args.beam} + char-LM", w, "0", {"beam": args.beam, "lm": lm, "lm_weight": float(w)}))
        rows.append((f"beam {args.beam} + char-LM", w, f"{args.bonus:g}",
                     {"beam": args.beam, "lm": lm, "lm_weight": float(w), "bonus": args.bonus}))
    print("| decoding | alpha | beta | test CER | connected CER | isolated accuracy | WER |")
    print("|---|---|---|---|---|---|---|")
    for name, a, b, kw in rows:
        m = task.evaluate("test", **kw)
        print(f"| {name} | {a} | {b} | {100 * m['cer']:.2f} % | {100 * m.get('cer_connected', float('nan')):.2f} % | "
              f"{100 * m.get('accuracy', float('nan')):.2f} % | {100 * m['wer']:.2f} % |", flush=True)


if __name__ == "__main__":
    main()
