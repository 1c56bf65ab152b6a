"""``rnnkit export CKPT --onnx FILE``: a trained model as one ONNX graph, for any task that says how.

A task with ``onnx_parts()`` (rnnkit.train.task) is exported through
:func:`rnnkit.io.onnx_export.compose_onnx`: [Embedding ->] the recurrent stack (the standard ONNX
``LSTM`` / ``GRU`` / ``RNN`` operators, with ``lengths`` and initial / final states) [-> the Linear
head at every step or on the last one].  The task's metadata (vocabulary, normalisation
statistics) and ``rnnkit.kind`` go into the model's ``metadata_props`` (JSON values).  Written
atomically.  docs/interop.md describes the graph.
"""
from __future__ import annotations

import json

import numpy as np

from rnnkit.errors import UserError
from rnnkit.io.checkpoint import read_header
from rnnkit.io.outputs import check_output
from rnnkit.train import read_checkpoint
from rnnkit.train.state import task_from


def export_onnx(task, path, opset: int | None = None) -> dict:
    """Write ``task``'s model to ``path`` as ONNX; returns the model's metadata_props (str -> str)."""
    parts = getattr(task, "onnx_parts", None)
    if parts is None:
        raise UserError(f"export: a {task.kind!r} checkpoint cannot be exported to ONNX (this task has no "
                        f"onnx_parts(); exportable: tasks whose model is [embedding ->] recurrent layers [-> Linear])")
    try:
        from rnnkit.io.onnx_export import OPSET, compose_onnx, save_onnx
        import onnx
    except ImportError:
        raise UserError("export: ONNX export needs onnx: pip install 'rnnkit[onnx]'") from None
    p = parts()
    dtype = np.dtype(p["recurrent"].dtype)
    if dtype != np.float32:
        raise UserError(f"export: this {task.kind} model is {dtype.name}; ONNX export writes float32 models "
                        f"(onnxruntime runs LSTM/GRU/RNN in float32 only): train it with --dtype float32")
    try:
        model = compose_onnx(p["recurrent"], embedding=p.get("embedding"), head=p.get("head"),
                             readout=p.get("readout", "every"), opset=opset or OPSET)
    except (TypeError, ValueError) as e:  # a layer with no ONNX operator (LayerNorm LSTM, proj_size)
        raise UserError(f"export: this {task.kind} model cannot be written as ONNX ({e})") from None
    props = {"rnnkit.kind": task.kind, **{f"rnnkit.{k}": json.dumps(v) for k, v in p.get("metadata", {}).items()}}
    onnx.helper.set_model_props(model, props)
    onnx.checker.check_model(model)
    save_onnx(model, path)
    return props


def _export(specs, args) -> int:
    if not args.onnx:
        raise UserError("export: say what to write: --onnx FILE")
    check_output(args.onnx, "onnx", reads=[args.checkpoint], what="--onnx")  # before any work
    kind = read_header(args.checkpoint)[1].get("kind")
    spec = next((s for s in specs if s.name == kind), None)
    if spec is None:
        raise UserError(f"export: no task for checkpoint kind {kind!r} ({args.checkpoint})")
    task = task_from(*read_checkpoint(args.checkpoint, spec.task_class), spec.task_class, args.checkpoint)
    props = export_onnx(task, args.onnx)
    print(f"onnx: {args.onnx} ({kind} model; metadata: {', '.join(sorted(props))})")
    return 0


def register(root, specs) -> None:
    """``rnnkit export``."""
    p = root.add_parser("export", help="export a checkpoint's model (ONNX)",
                        description="Export a trained model: --onnx FILE writes one ONNX graph "
                                    "(embedding, LSTM/GRU/RNN operators, head) for onnxruntime and other tools.")
    p.add_argument("checkpoint", metavar="CKPT")
    p.add_argument("--onnx", metavar="FILE", help="write the model as ONNX to FILE")
    p.set_defaults(func=lambda a: _export(specs, a))
