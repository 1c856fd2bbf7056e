"""Properties of the RESP parsers and encoders (hypothesis): whatever the commands and
however the bytes are split, the server's parser gives back exactly the commands sent;
replies and error lines survive encoding and both reply parsers; garbage is a
ProtocolError and nothing else."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from octopus.server.resp import (
    ProtocolError,
    Push,
    ReplyError,
    ReplyParser,
    RequestParser,
    encode,
    encode_command,
    reply_parser,
)

args = st.lists(st.binary(max_size=300), min_size=1, max_size=6)
commands = st.lists(args, min_size=1, max_size=8)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


@settings(max_examples=150, deadline=None)
@given(cmds=commands, cuts=st.lists(st.integers(0, 1 << 16), max_size=12))
def test_requests_survive_any_split(cmds: list[list[bytes]], cuts: list[int]) -> None:
    data = b"".join(encode_command(c) for c in cmds)
    parser = RequestParser()
    got: list[list[bytes]] = []
    for piece in split(data, cuts):
        parser.feed(piece)
        got += parser.commands()
    assert got == cmds and parser.buffered == 0


words = st.text(st.characters(codec="utf-8", categories=("L", "N"), include_characters="._-"),
                min_size=1, max_size=20)


@settings(max_examples=100, deadline=None)
@given(lines=st.lists(st.lists(words, min_size=1, max_size=5), min_size=1, max_size=5),
       crlf=st.booleans(), cuts=st.lists(st.integers(0, 1 << 12), max_size=6))
def test_inline_commands(lines: list[list[str]], crlf: bool, cuts: list[int]) -> None:
    end = "\r\n" if crlf else "\n"
    data = "".join(" ".join(words) + end for words in lines).encode()
    parser = RequestParser()
    got: list[list[bytes]] = []
    for piece in split(data, cuts):
        parser.feed(piece)
        got += parser.commands()
    assert got == [[w.encode() for w in words] for words in lines]


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=2000), cuts=st.lists(st.integers(0, 1 << 12), max_size=6))
def test_garbage_is_a_protocol_error_or_commands(data: bytes, cuts: list[int]) -> None:
    parser = RequestParser(max_args=16, max_bulk=256, max_request=1024, max_inline=512)
    try:
        for piece in split(data, cuts):
            parser.feed(piece)
            for command in parser.commands():
                assert command and all(type(a) is bytes for a in command)
    except ProtocolError:
        return
    # What stays buffered is the start of one command within the limits (or a line).
    assert parser.buffered <= len(data)


@settings(max_examples=100, deadline=None)
@given(count=st.integers(17, 1 << 31), extra=st.binary(max_size=50))
def test_lengths_past_the_limit_are_refused_at_their_header(count: int, extra: bytes) -> None:
    parser = RequestParser(max_args=16, max_bulk=256)
    parser.feed(b"*%d\r\n" % count + extra)
    with pytest.raises(ProtocolError):
        parser.commands()


scalars = st.one_of(st.none(), st.booleans(), st.integers(-(1 << 63), (1 << 63) - 1),
                    st.binary(max_size=100),
                    st.text(max_size=40).map(lambda t: ReplyError("ERR " + t)))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=5), max_leaves=20)


def normal(value: Any, proto: int, top: bool = True) -> Any:
    """What a reply parser gives back for an encoded value: a boolean reply is 1/0 (False
    is the parsers' "no reply yet"), a boolean inside an array a bool in RESP3."""
    if isinstance(value, bool):
        return value if proto >= 3 and not top else int(value)
    if isinstance(value, ReplyError):
        return ReplyError(value.replace("\r", " ").replace("\n", " ").encode(
            "utf-8", "replace").decode("utf-8", "replace"))
    if isinstance(value, list):
        return [normal(v, proto, False) for v in value]
    return value


@settings(max_examples=120, deadline=None)
@given(replies=st.lists(values, min_size=1, max_size=5), proto=st.sampled_from([2, 3]),
       hiredis=st.booleans(), push=st.booleans(),
       cuts=st.lists(st.integers(0, 1 << 12), max_size=8))
def test_replies_survive_both_parsers(replies: list[Any], proto: int, hiredis: bool,
                                      push: bool, cuts: list[int]) -> None:
    parser = reply_parser(prefer_hiredis=hiredis)
    if hiredis and type(parser) is ReplyParser:
        pytest.skip("hiredis is not installed")
    if push:
        replies = [Push(r) if isinstance(r, list) else r for r in replies]
    data = b"".join(encode(r, proto) for r in replies)
    got: list[Any] = []
    for piece in split(data, cuts):
        parser.feed(piece)
        while (value := parser.gets()) is not False:
            got.append(value)
    assert got == [normal(r, proto) for r in replies]
    for g, r in zip(got, replies, strict=True):
        if isinstance(r, bool):
            assert type(g) is int
        if isinstance(r, Push):
            assert isinstance(g, Push) == (proto >= 3)
