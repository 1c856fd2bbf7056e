"""The RESP parsers and encoders, without sockets."""

from __future__ import annotations

import pytest

from octopus.server.resp import (
    ProtocolError,
    Push,
    ReplyError,
    ReplyParser,
    RequestParser,
    Simple,
    encode,
    encode_command,
    reply_parser,
)


def parse_all(data: bytes, **limits: int) -> list[list[bytes]]:
    p = RequestParser(**limits)
    p.feed(data)
    return p.commands()


@pytest.mark.parametrize(("data", "expected"), [
    (b"*1\r\n$4\r\nPING\r\n", [[b"PING"]]),
    (b"*2\r\n$3\r\nGET\r\n$9\r\nx { a: 1 }\r\n"[:0] + b"*2\r\n$3\r\nGET\r\n$10\r\nx { a: 1 }\r\n",
     [[b"GET", b"x { a: 1 }"]]),
    (b"*2\r\n$3\r\nGET\r\n$0\r\n\r\n", [[b"GET", b""]]),
    (b"*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nPING\r\n", [[b"PING"], [b"PING"]]),
    (b"*0\r\n*1\r\n$4\r\nPING\r\n", [[b"PING"]]),                 # empty array: skipped
    (b"PING\r\n", [[b"PING"]]),                                  # inline
    (b"GET \"x { a: 'b c' }\"\n", [[b"GET", b"x { a: 'b c' }"]]),
    (b"\r\n\r\nPING\r\n", [[b"PING"]]),                          # blank lines
    (b"*1\r\n$4\r\nPI", []),                                     # incomplete
    (b"*1\r\n$4", []),
    (b"*1", []),
    (b"*2\r\n$3\r\nGET\r\n$5\r\n\xff\xfe\x00ab\r\n", [[b"GET", b"\xff\xfe\x00ab"]]),  # binary
])
def test_requests(data: bytes, expected: list[list[bytes]]) -> None:
    assert parse_all(data) == expected


@pytest.mark.parametrize(("data", "limits", "message"), [
    (b"*-1\r\n", {}, "multibulk length"),
    (b"*+1\r\n", {}, "multibulk length"),
    (b"* 1\r\n", {}, "multibulk length"),
    (b"*1x\r\n", {}, "multibulk length"),
    (b"*99999999999\r\n", {}, "multibulk length"),
    (b"*999999999999999999999999", {}, "multibulk length"),     # no CRLF, too long
    (b"*70000\r\n", {}, "limit"),
    (b"*3\r\n", {"max_args": 2}, "limit"),
    (b"*1\r\n$2147483648\r\n", {}, "bulk length"),
    (b"*1\r\n$9999999999\r\n", {}, "bulk length"),
    (b"*1\r\n$-1\r\n", {}, "bulk length"),
    (b"*1\r\n$1 \r\n", {}, "bulk length"),
    (b"*1\r\n$\r\n", {}, "bulk length"),
    (b"*1\r\n$1025\r\n", {"max_bulk": 1024}, "limit 1024"),
    (b"*2\r\n$600\r\n" + b"x" * 600 + b"\r\n$600\r\n", {"max_request": 1000}, "larger"),
    (b"*1\r\n:1\r\n", {}, "expected '.'"),
    (b"*1\r\n$3\r\nGETXX", {}, "CRLF"),
    (b"GET \"unbalanced\n", {}, "inline"),
    (b"x" * 70000, {}, "inline"),
    (b"\xff\xfe\n", {}, "inline"),
])
def test_protocol_errors(data: bytes, limits: dict[str, int], message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        parse_all(data, **limits)


def test_bulk_length_is_refused_before_its_bytes_arrive() -> None:
    # Only the header has arrived: the parser refuses it without waiting or allocating.
    p = RequestParser(max_bulk=1 << 20)
    p.feed(b"*1\r\n$536870912\r\n")
    with pytest.raises(ProtocolError, match="bulk length"):
        p.commands()


def test_byte_by_byte_feeding_gives_the_same_commands() -> None:
    stream = encode_command(["SET", "a { x: 'it''s' }"]) + b"PING\r\n" + \
        encode_command(["GET", "_ { x: %d }", "5"])
    p = RequestParser()
    got: list[list[bytes]] = []
    for i in range(len(stream)):
        p.feed(stream[i:i + 1])
        got += p.commands()
    assert got == [[b"SET", b"a { x: 'it''s' }"], [b"PING"], [b"GET", b"_ { x: %d }", b"5"]]
    assert p.buffered == 0


def test_commands_limit_keeps_the_rest_buffered() -> None:
    p = RequestParser()
    p.feed(b"*1\r\n$4\r\nPING\r\n" * 5)
    assert len(p.commands(2)) == 2
    assert len(p.commands()) == 3


def test_a_read_of_whole_commands_is_parsed_where_it_lies() -> None:
    """No copy of the read (issue 13): the parser keeps the bytes object it was fed
    and parses it in place; only a command split across reads is gathered."""
    p = RequestParser()
    read = b"*2\r\n$3\r\nGET\r\n$1\r\na\r\n" * 3 + b"*2\r\n$3\r\nGET\r\n$2\r\nb"
    p.feed(read)
    assert p._data is read and not p._buf
    assert p.commands(1) == [[b"GET", b"a"]]
    assert p._data is read and p.buffered == len(read) - 20    # the rest, not copied
    assert p.commands() == [[b"GET", b"a"]] * 2
    assert p.buffered == 18 and not p._buf                     # the incomplete command
    p.feed(b"b\r\n")                                           # its end: gathered
    assert p.commands() == [[b"GET", b"bb"]]
    assert p.buffered == 0 and not p._buf
    p.feed(bytearray(b"PING\r\n"))                             # any bytes-like read
    assert p.commands() == [[b"PING"]]


@pytest.mark.parametrize(("value", "proto", "wire"), [
    (None, 2, b"$-1\r\n"),
    (None, 3, b"_\r\n"),
    (True, 2, b":1\r\n"),
    (True, 3, b"#t\r\n"),
    (5, 2, b":5\r\n"),
    (-5, 3, b":-5\r\n"),
    (1.5, 2, b"$3\r\n1.5\r\n"),
    (1.5, 3, b",1.5\r\n"),
    ("é", 2, b"$2\r\n\xc3\xa9\r\n"),
    (b"", 2, b"$0\r\n\r\n"),
    (Simple("OK"), 2, b"+OK\r\n"),
    (ReplyError("ERR bad\r\nthing"), 2, b"-ERR bad  thing\r\n"),
    ([1, [b"a"]], 2, b"*2\r\n:1\r\n*1\r\n$1\r\na\r\n"),
    ({"a": 1}, 2, b"*2\r\n$1\r\na\r\n:1\r\n"),
    ({"a": 1}, 3, b"%1\r\n$1\r\na\r\n:1\r\n"),
    (Push([b"x", 1]), 3, b">2\r\n$1\r\nx\r\n:1\r\n"),
    (Push([b"x", 1]), 2, b"*2\r\n$1\r\nx\r\n:1\r\n"),
])
def test_encode(value: object, proto: int, wire: bytes) -> None:
    assert encode(value, proto) == wire


def test_encode_refuses_unknown_types() -> None:
    with pytest.raises(TypeError):
        encode(object())


PARSERS = ["python", "hiredis"]


def make_reply_parser(kind: str) -> object:
    if kind == "hiredis":
        pytest.importorskip("hiredis")
        return reply_parser(prefer_hiredis=True)
    return ReplyParser()


@pytest.mark.parametrize("kind", PARSERS)
def test_replies(kind: str) -> None:
    p = make_reply_parser(kind)
    wire = (b"+OK\r\n-NotFound no record\r\n:42\r\n$3\r\nabc\r\n$-1\r\n_\r\n"
            b"*2\r\n:1\r\n-ERR inner\r\n>3\r\n$7\r\ntrigger\r\n:1\r\n_\r\n"
            b"%1\r\n$1\r\nk\r\n,2.5\r\n#t\r\n#f\r\n*1\r\n#f\r\n")
    values = []
    for i in range(len(wire)):        # byte by byte: incomplete frames wait
        p.feed(wire[i:i + 1])         # type: ignore[attr-defined]
        while (v := p.gets()) is not False:  # type: ignore[attr-defined]
            values.append(v)
    assert values[0] in (b"OK", "OK")
    assert isinstance(values[1], ReplyError) and values[1].code == "NotFound"
    assert values[1].message == "no record"
    assert values[2:6] == [42, b"abc", None, None]
    assert values[6][0] == 1 and isinstance(values[6][1], ReplyError)
    assert isinstance(values[7], Push) and values[7] == [b"trigger", 1, None]
    assert values[8] == {b"k": 2.5}
    # A boolean reply is 1/0: a #f must not look like gets()'s "nothing yet" (False).
    assert values[9:] == [1, 0, [False]] and type(values[10]) is int
    assert values[11][0] is False


def test_reply_parser_refuses_unknown_types() -> None:
    p = ReplyParser()
    p.feed(b"?what\r\n")
    with pytest.raises(ProtocolError):
        p.gets()


def test_long_argument_arriving_in_pieces() -> None:
    big = "x" * 300_000
    stream = encode_command(["SET", "r { a: %s }", big]) + encode_command(["PING"])
    p = RequestParser()
    got: list[list[bytes]] = []
    for i in range(0, len(stream), 1000):
        p.feed(stream[i:i + 1000])
        got += p.commands()
    assert got == [[b"SET", b"r { a: %s }", big.encode()], [b"PING"]]
