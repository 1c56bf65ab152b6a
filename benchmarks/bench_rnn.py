"""rnnkit vs PyTorch's CPU RNN/LSTM/GRU, side by side; same flags as ``rnnkit bench speed``.

    .venv/bin/python benchmarks/bench_rnn.py            # full grid, all cells (~10 min on 2 cores)
    .venv/bin/python benchmarks/bench_rnn.py --quick    # LSTM, two grid points, 3 repeats

See src/rnnkit/bench/speed.py for what is measured and docs/performance.md for the results.
"""
import sys

from rnnkit.cli.bench import main

if __name__ == "__main__":
    sys.exit(main())
