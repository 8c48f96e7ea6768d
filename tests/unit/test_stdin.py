"""IdleAwareLines: stdin split into lines, whatever the chunks the pipe delivers."""

from __future__ import annotations

import io
import os
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from target_planhat import stdin
from target_planhat.stdin import IdleAwareLines
from tests.support.examples import examples


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 1 << 20])
@pytest.mark.parametrize(
    ("data", "lines"),
    [
        (b"", []),
        (b"a\n", [b"a"]),
        (b"a", [b"a"]),
        (b"a\nbb\n\nccc", [b"a", b"bb", b"", b"ccc"]),
        (b"\n\n", [b"", b""]),
        (b'{"x":1}\r\n{"y":2}\r\n', [b'{"x":1}\r', b'{"y":2}\r']),
        (b"\xff\xfe bad utf-8\nok\n", [b"\xff\xfe bad utf-8", b"ok"]),
    ],
)
def test_lines(monkeypatch, chunk, data, lines):
    monkeypatch.setattr(stdin, "_CHUNK", chunk)
    assert list(IdleAwareLines(io.BytesIO(data))) == lines


@settings(max_examples=examples(200), deadline=None)
@given(
    st.lists(st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"")), max_size=20),
    st.integers(1, 40),
    st.booleans(),
)
def test_any_chunking_gives_the_same_lines(lines, chunk, trailing_newline):
    data = b"\n".join(lines) + (b"\n" if trailing_newline and lines else b"")
    original = stdin._CHUNK
    stdin._CHUNK = chunk
    try:
        got = list(IdleAwareLines(io.BytesIO(data)))
    finally:
        stdin._CHUNK = original
    expected = data.split(b"\n")
    if expected[-1] == b"":
        expected.pop()
    assert got == expected


def test_a_line_longer_than_many_chunks(monkeypatch):
    monkeypatch.setattr(stdin, "_CHUNK", 1000)
    long = b"x" * 250_000
    assert list(IdleAwareLines(io.BytesIO(b"a\n" + long + b"\nb"))) == [b"a", long, b"b"]


def test_on_idle_is_called_while_the_pipe_is_quiet():
    read_end, write_end = os.pipe()
    idle = threading.Event()
    lines = IdleAwareLines(os.fdopen(read_end, "rb"), on_idle=idle.set, idle_seconds=0.05)
    os.write(write_end, b"first\n")
    iterator = iter(lines)
    assert next(iterator) == b"first"
    timer = threading.Timer(0.5, lambda: (os.write(write_end, b"second\n"), os.close(write_end)))
    timer.start()
    assert next(iterator) == b"second"  # blocks until the write; on_idle ran meanwhile
    assert idle.is_set()
    assert list(iterator) == []
    timer.join()
