"""``digests``: the 128-bit BLAKE2b digest the stores keep ids as."""

from __future__ import annotations

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from target_planhat.digests import digest, digests
from tests.support.examples import examples

_texts = st.text(alphabet=st.characters(codec=None))  # lone surrogates included


def _plain(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


@settings(max_examples=examples(200), deadline=None)
@given(st.lists(_texts, max_size=20))
def test_digests_equal_the_plain_digest_of_each_text(texts: list[str]) -> None:
    assert digests(texts) == [digest(text) for text in texts] == [_plain(t) for t in texts]


def test_a_digest_is_16_bytes_and_takes_any_string() -> None:
    assert len(digest("")) == 16
    assert digest("\ud800") == _plain("\ud800") != digest("\ud801")
    assert digests(iter(["a", "b"])) == [digest("a"), digest("b")]  # any iterable


@settings(max_examples=examples(200), deadline=None)
@given(st.lists(st.text(alphabet=st.sampled_from(["a", "\0", "\ud800", "é"]), max_size=4)))
def test_texts_holding_nul_are_hashed_one_by_one_the_same(texts: list[str]) -> None:
    """The one-call encoding splits at NUL: texts that hold one take the per-text path."""
    assert digests(texts) == [_plain(t) for t in texts]
