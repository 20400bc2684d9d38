"""Byte-level tokenizer: vocabulary of 256, nothing to train or download.

Byte 0 never occurs in the corpus text (it is stripped) and marks document boundaries.
"""

from __future__ import annotations

import numpy as np

EOT = 0  # end-of-document token


class ByteTokenizer:
    vocab_size = 256
    eot = EOT

    def encode(self, text: str) -> np.ndarray:
        return np.frombuffer(text.replace("\x00", "").encode("utf-8"), dtype=np.uint8)

    def decode(self, tokens) -> str:
        return bytes(int(t) for t in tokens if t != EOT).decode("utf-8", errors="replace")
