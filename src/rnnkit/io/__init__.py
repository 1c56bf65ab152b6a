"""Input/output: PyTorch interop, checkpoints, export."""
