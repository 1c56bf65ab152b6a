"""Benchmarks, outside the core and built only on rnnkit's public APIs (``rnnkit bench``).

* :mod:`.speed`     rnnkit vs PyTorch: fwd+bwd, inference, cache memory, streaming, a char-LM step
* :mod:`.sides`     the two sides of a comparison (worker processes) and A/B timing
* :mod:`.builders`  the callables each side times, from the same weights and data
* :mod:`.memory`    bytes a forward keeps for its backward, in both libraries
* :mod:`.longlag`   training sequences until the adding / copy task is solved (H&S 1997)
"""
