"""Runs the examples of the docs: fenced ```` ```octopus ```` blocks in markdown.

Each block is one scenario on a fresh :class:`octopus.Engine`; each line one call::

    ```octopus
    # a comment
    engine max_query_length=64                 optional, first: Engine(max_query_length=64)
    set obj1 { a: 1, s: 'abc' }                the call must succeed
    names _ { a >= 1 }          ⇒ [obj1]       ... and show this
    get _ { s: %s } with ('abc',)  ⇒ obj1 { a: 1, s: 'abc' }
    set x { a: _ }              ⇒ !QueryError  ... or raise exactly this class
    get x { a: 01 }             ⇒ !ParseError at 1:8
    ```

A line is ``OP TEXT [with (PARAMS)] [⇒ EXPECTED]``:

- ``TEXT`` is record or query text, verbatim (``␤`` stands for a newline);
  ``PARAMS`` a Python literal, the positional parameters of the placeholders.
- ``EXPECTED`` is what the call shows (compared as text, see :data:`OPS`) or ``!Error``
  (the exception's class name, exactly; a ParseError may add ``at line:column``).
  Without ``⇒`` the call must simply not raise.
- A first line ``engine max_query_length=16`` makes the block's engine with those
  options. The info string is ``octopus`` alone: Markdown renderers (the docs site's
  Python-Markdown) do not take words after the language, and a fence they misread
  swallows the page after it.

The runner is strict on purpose: an unknown op, a malformed line or a block that checks
nothing is an error, so a wrong example can never pass by being skipped.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import octopus
from octopus import Event, Mode

ARROW = " ⇒ "
NEWLINE = "␤"
FENCE = "```"
INFO = "octopus"
ENGINE = "engine"               # the line that sets engine options
ENGINE_OPTIONS = {"max_query_length"}
SET_OPTIONS = {"sequential"}


@dataclass(frozen=True)
class Step:
    """One line of an example."""

    line: int                     # 1-based, in the markdown file
    source: str                   # the line as written
    op: str
    options: frozenset[str]
    text: str
    params: tuple[object, ...]
    expected: str | None


@dataclass(frozen=True)
class Example:
    """One fenced block: a scenario on a fresh engine."""

    path: str
    line: int                     # the line of the opening fence
    engine_options: dict[str, int]
    steps: tuple[Step, ...]

    @property
    def id(self) -> str:
        return f"{Path(self.path).name}:{self.line}"


class ExampleSyntaxError(ValueError):
    """A line of an example does not follow the format (a doc bug, not an engine bug)."""


# --- extraction ----------------------------------------------------------------------

_OP_RE = re.compile(r"(?P<op>[a-z]+)(?:\[(?P<opts>[a-z, ]+)\])?(?:\s+(?P<rest>.*))?\Z", re.S)


def _parse_step(path: str, number: int, raw: str) -> Step:
    where = f"{path}:{number}"
    body, expected = raw, None
    if ARROW in raw:
        body, _, expected = raw.rpartition(ARROW)
        expected = expected.strip()
        if not expected:
            raise ExampleSyntaxError(f"{where}: nothing after ⇒")
    elif raw.rstrip().endswith("⇒"):
        raise ExampleSyntaxError(f"{where}: nothing after ⇒")
    match = _OP_RE.match(body.strip())
    if match is None:
        raise ExampleSyntaxError(f"{where}: not 'OP TEXT [⇒ EXPECTED]': {raw!r}")
    op = match["op"]
    if op not in OPS:
        raise ExampleSyntaxError(f"{where}: unknown op {op!r} (known: {', '.join(OPS)})")
    options = frozenset(o.strip() for o in (match["opts"] or "").split(",") if o.strip())
    if options - SET_OPTIONS or (options and op != "set"):
        raise ExampleSyntaxError(f"{where}: unknown options {sorted(options)} for {op}")
    text = (match["rest"] or "").strip()
    params: tuple[object, ...] = ()
    cut = text.rfind(" with (")
    if cut >= 0:
        if not text.endswith(")"):
            raise ExampleSyntaxError(f"{where}: parameters must end the text: 'with (...)'")
        try:
            # A Python literal, or float('nan') and the like: the docs are trusted text.
            value = eval(text[cut + len(" with "):], {"__builtins__": {}, "float": float})
        except (ValueError, SyntaxError, NameError, TypeError) as e:
            raise ExampleSyntaxError(f"{where}: bad parameters: {e}") from None
        params = value if isinstance(value, tuple) else (value,)
        text = text[:cut].rstrip()
    if OPS[op].needs_text and not text:
        raise ExampleSyntaxError(f"{where}: {op} needs a text")
    if not OPS[op].needs_text and (text or params):
        raise ExampleSyntaxError(f"{where}: {op} takes no text")
    return Step(number, raw, op, options, text.replace(NEWLINE, "\n"), params, expected)


def extract(markdown: str, path: str) -> list[Example]:
    """Every ```` ```octopus ```` block of ``markdown`` (from file ``path``)."""
    examples: list[Example] = []
    block: list[Step] | None = None
    opened, options = 0, {}
    for number, line in enumerate(markdown.splitlines(), start=1):
        if block is None:
            if line.startswith(FENCE):
                info = line[len(FENCE):].split()
                if info and info[0] == INFO:
                    if info[1:]:
                        raise ExampleSyntaxError(
                            f"{path}:{number}: the info string is 'octopus' alone; set "
                            f"engine options with a first line 'engine KEY=VALUE ...'")
                    block, opened, options = [], number, {}
            continue
        if line.startswith(FENCE):
            if not any(s.expected is not None for s in block):
                raise ExampleSyntaxError(f"{path}:{opened}: the block checks nothing (no ⇒)")
            examples.append(Example(path, opened, options, tuple(block)))
            block = None
            continue
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line.startswith(ENGINE + " "):
            if block or options:
                raise ExampleSyntaxError(f"{path}:{number}: '{ENGINE} ...' must be the "
                                         "first line of the block")
            options = _engine_options(path, number, line.split()[1:])
            continue
        block.append(_parse_step(path, number, line))
    if block is not None:
        raise ExampleSyntaxError(f"{path}:{opened}: the block is never closed")
    return examples


def _engine_options(path: str, number: int, words: list[str]) -> dict[str, int]:
    options = {}
    for word in words:
        key, eq, value = word.partition("=")
        if not eq or key not in ENGINE_OPTIONS or not value.isdigit():
            raise ExampleSyntaxError(f"{path}:{number}: unknown engine option {word!r}")
        options[key] = int(value)
    return options


# --- running -------------------------------------------------------------------------

@dataclass
class Scene:
    """The state an example runs in: its engine and the events its watchers saw."""

    engine: octopus.Engine
    events: list[Event] = field(default_factory=list)


def _names(names: list[str]) -> str:
    return "[" + ", ".join(names) + "]"


def _event(event: Event) -> str:
    kind = {Mode.ON_SET: "set", Mode.ON_DEL: "del", Mode.ON_PUBLISH: "publish"}
    base = event.mode & ~Mode.REMOVED
    label = kind.get(base, "removed") if base else "removed"
    return label if event.record is None else f"{label} {event.record.name}"


def _events(scene: Scene, step: Step) -> str:
    scene.engine.flush()
    seen, scene.events[:] = list(scene.events), []
    return "[" + ", ".join(_event(e) for e in seen) + "]"


def _read(scene: Scene, step: Step) -> str:
    name, _, fmt = step.text.partition(" ")
    return repr(octopus.read(scene.engine.get(name), fmt.strip()))


def _set(scene: Scene, step: Step) -> str:
    return str(scene.engine.set(step.text, *step.params,
                                sequential="sequential" in step.options))


def _watch(scene: Scene, step: Step) -> str:
    trigger = scene.engine.watch(step.text, scene.events.append, *step.params)
    return str(trigger.query)


def _subscribe(scene: Scene, step: Step) -> str:
    return scene.engine.subscribe(step.text, scene.events.append, *step.params).query


@dataclass(frozen=True)
class Op:
    call: Callable[[Scene, Step], str]
    needs_text: bool = True
    doc: str = ""


OPS: dict[str, Op] = {
    "set": Op(_set, doc="engine.set(TEXT); shows the stored record"),
    "get": Op(lambda s, t: str(s.engine.get(t.text, *t.params)),
              doc="engine.get(TEXT); shows the record"),
    "names": Op(lambda s, t: _names(s.engine.get_names(t.text, *t.params)),
                doc="engine.get_names(TEXT); shows [name, ...]"),
    "all": Op(lambda s, t: "[" + ", ".join(str(r) for r in
                                          s.engine.get_all(t.text, *t.params)) + "]",
              doc="engine.get_all(TEXT); shows [record, ...]"),
    "exists": Op(lambda s, t: str(s.engine.exists(t.text, *t.params)).lower(),
                 doc="engine.exists(TEXT); shows true or false"),
    "delete": Op(lambda s, t: str(s.engine.delete(t.text, *t.params)),
                 doc="engine.delete(TEXT); shows the deleted record"),
    "publish": Op(lambda s, t: str(s.engine.publish(t.text, *t.params)),
                  doc="engine.publish(TEXT); shows the number of deliveries"),
    "watch": Op(_watch, doc="engine.watch(TEXT) (persistent, ON_SET|ON_DEL); shows the "
                            "trigger's canonical query"),
    "subscribe": Op(_subscribe, doc="engine.subscribe(TEXT); shows the canonical query"),
    "events": Op(_events, needs_text=False,
                 doc="the events watchers and subscribers got since the last 'events', "
                     "in delivery order: [set NAME, del NAME, publish NAME, removed]"),
    "read": Op(_read, doc="octopus.read(engine.get(NAME), FORMAT) for 'read NAME FORMAT'; "
                          "shows the tuple"),
    "revision": Op(lambda s, t: str(s.engine.revision), needs_text=False,
                   doc="engine.revision"),
}


def _expected_error(expected: str) -> tuple[str, str | None]:
    name, _, at = expected[1:].partition(" at ")
    return name.strip(), (at.strip() or None)


def run_step(scene: Scene, step: Step, path: str) -> None:
    where = f"{path}:{step.line}: {step.source.strip()}"
    try:
        shown = OPS[step.op].call(scene, step)
    except octopus.OctopusError as error:
        if step.expected is None or not step.expected.startswith("!"):
            raise AssertionError(f"{where}\n  raised {type(error).__name__}: {error}") from error
        name, at = _expected_error(step.expected)
        got = type(error).__name__
        if got != name:
            raise AssertionError(f"{where}\n  raised {got}: {error}\n  the doc says {name}") \
                from error
        if at is not None:
            if not isinstance(error, octopus.ParseError):
                raise AssertionError(f"{where}\n  'at' is for ParseError only") from error
            position = f"{error.line}:{error.column}"
            if position != at:
                raise AssertionError(f"{where}\n  ParseError at {position}, the doc says {at}"
                                     f" ({error})") from error
        return
    if step.expected is None:
        return
    if step.expected.startswith("!"):
        raise AssertionError(f"{where}\n  gave {shown!r}, the doc says it raises "
                             f"{step.expected[1:]}")
    if shown != step.expected:
        raise AssertionError(f"{where}\n  gave     {shown!r}\n  the doc: {step.expected!r}")


def run(example: Example) -> None:
    """Run every step of ``example`` on a fresh engine; AssertionError on a mismatch."""
    with octopus.Engine(**example.engine_options) as engine:
        scene = Scene(engine)
        for step in example.steps:
            run_step(scene, step, example.path)
