"""The 128-bit BLAKE2b digest the stores keep ids as (ledger, rejected ids, metric counts).

128 bits because a collision would silently drop a real event (the ledger) or hide a rejected one
(the dead-letter file): among 10^9 ids the chance is ~10^-21. Any string is hashed, lone
surrogates included (``surrogatepass``).
"""

from __future__ import annotations

import functools
import hashlib
import operator
from collections.abc import Iterable

__all__ = ["digest", "digests"]

_ENCODE = operator.methodcaller("encode", "utf-8", "surrogatepass")
_HASH = functools.partial(hashlib.blake2b, digest_size=16)
_DIGEST = operator.methodcaller("digest")


def digest(text: str) -> bytes:
    """The 16-byte digest of ``text``."""
    return _HASH(_ENCODE(text)).digest()


def digests(texts: Iterable[str]) -> list[bytes]:
    """:func:`digest` of each text, through C-level ``map`` calls (no Python loop per text).

    The texts are encoded in one call where none holds a NUL (ids never do), then split: a
    batch's ids are hashed in the thread that sends, holding the GIL the input thread waits for.
    """
    texts = texts if isinstance(texts, list) else list(texts)
    joined = "\0".join(texts)
    if texts and joined.count("\0") == len(texts) - 1:
        encoded: Iterable[bytes] = joined.encode("utf-8", "surrogatepass").split(b"\0")
    else:
        encoded = map(_ENCODE, texts)
    return list(map(_DIGEST, map(_HASH, encoded)))
