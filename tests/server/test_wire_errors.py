"""Errors over the wire (docs/server.md, *Error replies*): every OctopusError subclass
comes back from a server with its class, message and attributes, through both reply
parsers, and through a real server the client raises what the engine raises in-process."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import octopus
from octopus import errors
from octopus.errors import OctopusError, ParseError
from octopus.server import connect
from octopus.server.client_base import AuthenticationError, error_from_reply
from octopus.server.commands import error_reply
from octopus.server.resp import ReplyError, ReplyParser, reply_parser
from octopus.server.wire import ERROR_TAIL, error_from_line, error_line

from .conftest import ServerProcess

MODULES = ("octopus.errors", "octopus.server.resp", "octopus.server.client_base",
           "octopus.cluster.etcd")


def all_error_classes() -> list[type[OctopusError]]:
    for m in MODULES:
        importlib.import_module(m)
    out: list[type[OctopusError]] = []
    todo: list[type[OctopusError]] = [OctopusError]
    while todo:
        cls = todo.pop()
        if cls.__module__.startswith("octopus") and "tests" not in cls.__module__:
            out.append(cls)
        todo.extend(cls.__subclasses__())
    return sorted(set(out), key=lambda c: (c.__module__, c.__name__))


def make(cls: type[OctopusError], message: str) -> OctopusError:
    """An instance with every constructor argument given a non-default value."""
    kwargs: dict[str, Any] = {}
    try:
        parameters = list(inspect.signature(cls).parameters.items())[1:]
    except ValueError:              # Exception's own constructor: a message
        parameters = []
    for name, p in parameters:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if name == "text":
            kwargs[name] = "}\n ~{x"
        elif name == "hint":
            kwargs[name] = False
        elif name == "applied":
            kwargs[name] = True
        else:
            kwargs[name] = 7
    return cls(message, **kwargs)


def public(exc: BaseException) -> dict[str, object]:
    return {k: v for k, v in vars(exc).items() if not k.startswith("_")}


def over_the_wire(exc: OctopusError, hiredis: bool) -> OctopusError:
    parser = reply_parser(prefer_hiredis=hiredis)
    if hiredis and type(parser) is ReplyParser:
        pytest.skip("hiredis is not installed")
    parser.feed(error_reply(exc))
    reply = parser.gets()
    assert type(reply) is ReplyError
    return error_from_reply(reply)


def assert_same(got: OctopusError, exc: OctopusError) -> None:
    assert type(got) is type(exc)
    assert str(got) == str(exc) and got.args == exc.args
    assert public(got) == public(exc)


MESSAGES = ["plain", "", "two\r\nlines", "a ~{\"m\": 1} marker", "ünïcödé ✓", "x" * 5000,
            'ends with a tail ~{"line":9}']


@pytest.mark.parametrize("cls", all_error_classes(), ids=lambda c: c.__name__)
@pytest.mark.parametrize("hiredis", [False, True], ids=["python", "hiredis"])
def test_every_error_class_round_trips(cls: type[OctopusError], hiredis: bool) -> None:
    for message in MESSAGES:
        exc = make(cls, message)
        got = over_the_wire(exc, hiredis)
        if cls is AuthenticationError:      # what the server sends as NOAUTH/WRONGPASS
            assert type(got) is AuthenticationError
            continue
        assert_same(got, exc)


def test_the_wire_format() -> None:
    exc = ParseError("unexpected '}'", line=2, column=5, text="}")
    assert error_reply(exc) == (b"-ParseError unexpected '}' at line 2, column 5 ~{"
                                b'"reason":"unexpected \'}\'","line":2,"column":5,"text":"}"}'
                                b"\r\n")
    assert error_reply(errors.NotFound("no record matches 'x'")) == \
        b"-NotFound no record matches 'x'\r\n"             # nothing more to say: no tail
    line = error_line(errors.ConditionFailed("a\nb ~{c"))
    assert line == 'ConditionFailed a b ~ {c ~{"m":"a\\nb ~{c"}'
    # The tail starts at the first marker (the JSON may hold more of them).
    assert line.find(ERROR_TAIL) == len("ConditionFailed a b ~ {c")


def test_classes_the_client_does_not_import_arrive_as_their_ancestor() -> None:
    from octopus.cluster.etcd import OutcomeUnknown

    assert error_line(OutcomeUnknown("lost")) == 'OutcomeUnknown lost ~{"is":"Unavailable"}'
    got = error_from_line('FutureError new ~{"is":"Unavailable","retry":true}')
    assert type(got) is errors.Unavailable and str(got) == "new" and got.retry is True  # type: ignore[attr-defined]
    assert error_from_line("ERR unknown command 'X'") is None
    assert error_from_line('FutureError x ~{"is":"NoSuchBase"}') is None
    reply = error_from_reply(ReplyError("ERR unknown command 'X'"))
    assert type(reply) is OctopusError and str(reply) == "ERR unknown command 'X'"


@pytest.mark.parametrize("tail", ['~{not json', '~{"m": 5}', '~{"_x": 1, "__class__": 2}',
                                  '~[1, 2]', '~{"line": [1]}'])
def test_a_malformed_tail_is_harmless(tail: str) -> None:
    got = error_from_line(f"ParseError bad {tail}")
    assert type(got) is ParseError
    assert "__class__" not in vars(got) and "_x" not in vars(got)
    assert not isinstance(getattr(got, "line", None), list)


@settings(max_examples=300, deadline=None)
@given(reason=st.text(), line=st.integers(1, 1 << 40), column=st.integers(1, 1 << 20),
       text=st.text(max_size=50), hiredis=st.booleans())
def test_parse_errors_round_trip(reason: str, line: int, column: int, text: str,
                                 hiredis: bool) -> None:
    exc = ParseError(reason, line=line, column=column, text=text)
    got = over_the_wire(exc, hiredis)
    assert_same(got, exc)
    assert (got.reason, got.line, got.column, got.text) == (reason, line, column, text)


@settings(max_examples=300, deadline=None)
@given(cls=st.sampled_from(all_error_classes()), message=st.text(), hiredis=st.booleans())
def test_any_message_round_trips(cls: type[OctopusError], message: str, hiredis: bool) -> None:
    if cls is AuthenticationError:
        return
    exc = make(cls, message)
    assert_same(over_the_wire(exc, hiredis), exc)


# --- through a real server ---------------------------------------------------------------


@pytest.fixture(scope="module")
def pair(server: ServerProcess) -> Iterator[tuple[octopus.Engine, Any]]:
    with octopus.Engine() as engine, connect(server.unix_url) as client:
        yield engine, client


def raised(call: Any, *args: Any) -> OctopusError:
    with pytest.raises(OctopusError) as info:
        call(*args)
    return info.value


@pytest.mark.parametrize("op, args", [
    ("get", ("x {",)),
    ("get", ("_ { a: 1, }",)),
    ("get", ("r'(' ",)),
    ("get", ("a\n{ b: 'unterminated }",)),
    ("get", ("missing.record",)),
    ("get_names", ("_ { a > true }",)),
    ("set", ("a { b: 1, b: 2 }",)),
    ("set", ("cas { v: 2, v == 1 }",)),
    ("delete", ("r'^a'",)),
    ("delete", ("nothing.here",)),
    ("publish", ("m { a: ",)),
    ("remove_trigger", (12345,)),
    ("unsubscribe", (12345,)),
])
def test_the_client_raises_what_the_engine_raises(pair: tuple[octopus.Engine, Any], op: str,
                                                  args: tuple[object, ...]) -> None:
    engine, client = pair
    local = raised(getattr(engine, op), *args)
    remote = raised(getattr(client, op), *args)
    assert type(remote) is type(local)
    assert str(remote) == str(local) and public(remote) == public(local)
    if isinstance(local, ParseError):
        assert (remote.reason, remote.line, remote.column, remote.text) == \
            (local.reason, local.line, local.column, local.text)
