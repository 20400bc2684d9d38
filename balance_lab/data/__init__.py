"""Data: the built-in corpus, text folders, token files, tokenizers and the Lightning DataModule.

The subject of study, with model/ and balancing/: may import the shared leaves only.
"""
