"""Diagnostics: look inside recurrent networks.

* :mod:`.gradflow`      per-step norms of dL/dh_t, dL/dc_t from the real BPTT pass
* :mod:`.gates`         gate saturation statistics (Karpathy, Johnson & Fei-Fei 2015)
* :mod:`.inspect_page`  self-contained HTML pages colouring text by a unit's activation
"""
