"""Data loading for the training tasks (text corpora, vocabularies, splits)."""
