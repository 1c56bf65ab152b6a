"""asv benchmarks of rnnkit alone (no PyTorch in the process): see benchmarks/asv.conf.json."""
