"""Data: the built-in corpus, tokenizers and the Lightning DataModule."""
