"""The 128-bit BLAKE2b digest the stores keep ids as (ledger, rejected ids, metric counts).

128 bits because a collision would silently drop a real event (the ledger) or hide a rejected one
(the dead-letter file): among 10^9 ids the chance is ~10^-21. Any string is hashed, lone
surrogates included (``surrogatepass``).
"""

from __future__ import annotations

import hashlib
import operator
from collections.abc import Iterable

__all__ = ["digest", "digests"]

_ENCODE = operator.methodcaller("encode", "utf-8", "surrogatepass")
#: BLAKE2b set up for 16-byte digests, copied for each text: a copy costs about half of a new
#: hash object made with ``digest_size=16`` (keyword parsing per call), and gives the same digest.
_SEED = hashlib.blake2b(digest_size=16)


def digest(text: str) -> bytes:
    """The 16-byte digest of ``text``."""
    hashed = _SEED.copy()
    hashed.update(_ENCODE(text))
    return hashed.digest()


def digests(texts: Iterable[str]) -> list[bytes]:
    """:func:`digest` of each text, at the least cost per text the standard library allows: a
    batch's ids are hashed in the thread that sends, holding the GIL the input thread waits for.

    The texts are encoded in one call where none holds a NUL (ids never do), then split. Each is
    hashed by a copy of :data:`_SEED` in a plain loop, which measured faster than ``map`` over
    the unbound methods or a new object per text (``benchmarks/README.md``); the unit test
    compares every result with :func:`digest`.
    """
    texts = texts if isinstance(texts, list) else list(texts)
    joined = "\0".join(texts)
    if texts and joined.count("\0") == len(texts) - 1:
        encoded: Iterable[bytes] = joined.encode("utf-8", "surrogatepass").split(b"\0")
    else:
        encoded = map(_ENCODE, texts)
    copy = _SEED.copy
    out = []
    for data in encoded:
        hashed = copy()
        hashed.update(data)
        out.append(hashed.digest())
    return out
