"""Data: series generators and loaders, long-lag task generators, text corpora."""
