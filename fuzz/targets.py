"""The readers rnnkit fuzzes: one entry of :data:`TARGETS` per harness (fuzz/README.md).

A target reads ``files`` paths that the harness (fuzz/run.py) fills with the fuzzer's bytes (split
at the first NUL byte for two files).  The only acceptable outcome besides success is rnnkit's own
:class:`rnnkit.errors.UserError`; anything else is a crash.

Adding a reader (a WAV reader, a manifest, JSONL fields) is one function and one line::

    def wav(paths):
        read_wav(paths[0])

    TARGETS["wav"] = Target(wav, suffix=".wav")
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Target:
    """``read(paths)``: the reader under test; ``files``: how many input files; ``suffix``: their extension."""

    read: Callable
    files: int = 1
    suffix: str = ""


def checkpoint(paths):
    """The checkpoint loader and the header validator (against a char-LM and for a resume)."""
    from rnnkit.io.checkpoint import load_checkpoint, read_header
    from rnnkit.tasks.charlm import CharLM
    from rnnkit.train.guard import read_checkpoint

    read_header(paths[0])
    load_checkpoint(paths[0])
    read_checkpoint(paths[0], CharLM, training=True)


def text(paths):
    from rnnkit.data.text import load_text

    load_text(paths[0])


def csv(paths):
    from rnnkit.data.series import load_csv_column

    load_csv_column(paths[0], "v")


def tsv(paths):
    """Labelled TSV (classification) and source<TAB>target pairs (seq2seq)."""
    from rnnkit.data.classify import read_labelled_tsv
    from rnnkit.data.pairs import read_tsv_pairs
    from rnnkit.errors import UserError

    try:
        read_labelled_tsv(paths[0])
    finally:  # both readers see every input
        try:
            read_tsv_pairs(paths[0])
        except UserError:
            pass


def jsonl(paths):
    """metrics.jsonl: read for plots, trimmed on a resume."""
    from rnnkit.train.log import read_metrics, trim_after

    try:
        read_metrics(paths[0])
    finally:
        trim_after(paths[0], 3)


def two_files(paths):
    """Line-aligned source and target files (seq2seq --src/--tgt; summarize's documents and summaries)."""
    from rnnkit.data.documents import read_two_files
    from rnnkit.data.pairs import read_parallel
    from rnnkit.errors import UserError

    try:
        read_parallel(paths[0], paths[1])
    finally:
        try:
            read_two_files(paths[0], paths[1])
        except UserError:
            pass


def jsonl_documents(paths):
    """A JSON-lines corpus of documents and summaries (summarize), with a reference field."""
    from rnnkit.data.documents import read_jsonl

    read_jsonl(paths[0], "document", "summary", ref_fields=("refs",))


def manifest(paths):
    """A speech manifest, TSV or NeMo JSON lines (asr)."""
    from rnnkit.data.manifest import read_manifest

    read_manifest(paths[0])


def wav(paths):
    """A WAV file (asr), resampled to 16 kHz."""
    from rnnkit.data.audio import read_audio

    read_audio(paths[0], 16000)


def onnx(paths):
    from rnnkit.io.onnx_import import from_onnx

    from_onnx(paths[0])


def sweep_spec(paths):
    from rnnkit.sweep.spec import load_spec

    load_spec(paths[0])


TARGETS = {
    "checkpoint": Target(checkpoint, suffix=".safetensors"),
    "text": Target(text, suffix=".txt"),
    "csv": Target(csv, suffix=".csv"),
    "tsv": Target(tsv, suffix=".tsv"),
    "jsonl": Target(jsonl, suffix=".jsonl"),
    "two_files": Target(two_files, files=2, suffix=".txt"),
    "onnx": Target(onnx, suffix=".onnx"),
    "sweep_spec": Target(sweep_spec, suffix=".toml"),
    "jsonl_documents": Target(jsonl_documents, suffix=".jsonl"),
    "manifest": Target(manifest, suffix=".tsv"),
    "wav": Target(wav, suffix=".wav"),
}


def split(data: bytes, n: int) -> list[bytes]:
    """The contents of ``n`` files from one input: split at the first NUL byte (n = 2)."""
    if n == 1:
        return [data]
    head, _, tail = data.partition(b"\0")
    return [head, tail]


def run_one(name: str, data: bytes, workdir: str) -> None:
    """Feed ``data`` to target ``name`` through files in ``workdir``; a UserError is an accepted answer,
    anything else propagates (a crash)."""
    from rnnkit.errors import UserError

    target = TARGETS[name]
    paths = []
    for k, content in enumerate(split(data, target.files)):
        p = os.path.join(workdir, f"in{k}{target.suffix}")
        with open(p, "wb") as f:
            f.write(content)
        paths.append(p)
    try:
        target.read(paths)
    except UserError:
        pass
