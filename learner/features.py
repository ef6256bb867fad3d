"""Cheap text features for drift detection: hashed, lower-cased word counts.

>>> f = HashedWords(n_buckets=16)
>>> idx, counts = f("The cat saw the cat.")
>>> int(counts.sum()), len(idx)
(5, 3)
>>> sorted(f.name(i) for i in idx)
['cat', 'saw', 'the']
"""

from __future__ import annotations

import re
import zlib

import numpy as np

__all__ = ["HashedWords"]

_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)?", re.UNICODE)


class HashedWords:
    """Map a text to sparse counts over ``n_buckets`` hashed word buckets.

    The hash is CRC-32 (stable across processes, unlike Python's ``hash``). The first
    word seen in each bucket names it, so drift reports can say what rose or fell.
    """

    def __init__(self, n_buckets: int = 1024, max_words: int = 512):
        if n_buckets < 2:
            raise ValueError(f"n_buckets must be at least 2, got {n_buckets!r}")
        self.n_buckets = n_buckets
        self.max_words = max_words
        self.names: dict[int, str] = {}

    def __call__(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(bucket indices, counts)``, indices unique and sorted."""
        words = _WORD.findall(text.lower())[: self.max_words]
        buckets = np.fromiter(
            (zlib.crc32(w.encode("utf-8")) % self.n_buckets for w in words),
            dtype=np.int64,
            count=len(words),
        )
        for word, bucket in zip(words, buckets.tolist()):
            self.names.setdefault(bucket, word)
        idx, counts = np.unique(buckets, return_counts=True)
        return idx, counts.astype(np.float64)

    def name(self, bucket: int) -> str:
        return self.names.get(int(bucket), f"#{int(bucket)}")
