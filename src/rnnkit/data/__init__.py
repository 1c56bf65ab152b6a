"""Data for the training tasks.

text (char-LM corpus, the stdlib default), series, longlag; for sequence models
over token sequences: lines (UTF-8 line files, FILE:LINE errors), parallel
(source/target pairs), tokenize (char / word / BPE), vocab (ids with specials),
batching (length filters, buckets, padded time-major batches), dates (the
default seq2seq corpus), classify (labelled text, the stdlib default, splits).
"""
