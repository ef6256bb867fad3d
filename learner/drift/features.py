"""Cheap text features for drift detection: hashed, lower-cased content words.

Words are letters and digits (any script), lower-cased; English function words ("the", "and",
"of", ...) are left out, because they carry register rather than topic and, being most of the mass,
they would drown the words that move when a stream changes subject. Each word goes to one of
``n_buckets`` buckets by CRC-32 (stable across processes, unlike Python's ``hash``); the first
word seen in a bucket names it, so a drift report says what rose or fell.

Built for the ingest path: a text is cut at ``max_chars`` before it is read (a 10 MB memory costs
what its start costs), at most its first ``max_words`` words are read, and each word's bucket is
remembered (a bounded cache) instead of hashed again.

>>> f = HashedWords(n_buckets=16)
>>> f("The cat saw the cat.")
{8: 2, 2: 1}
>>> sorted(f.name(b) for b in f("The cat saw the cat."))
['cat', 'saw']
>>> f(""), f("   "), f("the of and")
({}, {}, {})
"""

from __future__ import annotations

import re
import zlib

__all__ = ["HashedWords", "STOP_WORDS"]

_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)?", re.UNICODE)

#: English function words (left out of the features).
STOP_WORDS = frozenset("""
a about above after again against all am an and any are as at be because been before being below between both
but by can could did do does doing down during each few for from further had has have having he her here hers
herself him himself his how i if in into is it its itself just me more most my myself no nor not now of off on
once only or other our ours ourselves out over own same she should so some such than that the their theirs them
themselves then there these they this those through to too under until up very was we were what when where which
while who whom why will with would you your yours yourself yourselves i'm it's don't that's let's we're i've
you're can't isn't also get got like one two use used using may might must shall much many every via per yet
""".split())


class HashedWords:
    """Map a text to sparse counts ``{bucket: count}`` over ``n_buckets`` hashed content-word buckets."""

    def __init__(self, n_buckets: int = 1024, max_words: int = 512, max_chars: int = 8192,
                 stop_words: bool = True, cache_size: int = 50_000):
        if n_buckets < 2:
            raise ValueError(f"n_buckets must be at least 2, got {n_buckets!r}")
        self.n_buckets = n_buckets
        self.max_words = max_words
        self.max_chars = max_chars
        self.stop_words = STOP_WORDS if stop_words else frozenset()
        self.cache_size = cache_size
        self.names: dict[int, str] = {}
        self._bucket = _Buckets(self)

    def __call__(self, text: str) -> dict[int, int]:
        """``{bucket: count}`` of the text's content words (empty for a text without any)."""
        words = _WORD.findall(text[: self.max_chars].lower())[: self.max_words]
        counts: dict[int, int] = {}
        seen = counts.get
        for bucket in map(self._bucket.__getitem__, words):  # a word not seen before goes through _Buckets
            counts[bucket] = seen(bucket, 0) + 1
        counts.pop(-1, None)  # stop words
        return counts

    def name(self, bucket: int) -> str:
        return self.names.get(int(bucket), f"#{int(bucket)}")


class _Buckets(dict):
    """word -> bucket (-1 for a stop word); a word not seen before is hashed, named and remembered."""

    def __init__(self, owner: HashedWords):
        super().__init__()
        self.owner = owner

    def __missing__(self, word: str) -> int:
        owner = self.owner
        bucket = -1 if word in owner.stop_words else zlib.crc32(word.encode("utf-8")) % owner.n_buckets
        if bucket >= 0 and bucket not in owner.names:
            owner.names[bucket] = word
        if len(self) < owner.cache_size:
            self[word] = bucket
        return bucket
