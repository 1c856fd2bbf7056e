"""Ordered indexes of attribute values: the store's secondary index, beside Prolog.

The Prolog store (prolog/store.pl) keeps one fact per record and no attribute index;
:class:`octopus.adapter.PrologStore` keeps, for each attribute key that queries use,
a :class:`KeyIndex` here and hands Prolog the names it finds (docs/architecture.md,
"The store in Prolog", says why the index lives in Python and what it costs).

What an index guarantees: a :class:`KeyIndex` of key ``k`` holds exactly one entry
``(value, name)`` per stored record that has ``k`` — the caller keeps it so under its
lock, from what every write of the store reports — and answers, in
O(log n + answer), the names whose value of ``k`` satisfies ``op operand`` under the
matching rules of docs/language.md:

* numbers compare by their exact values, as Python compares ``int`` and ``float``
  (``1 == 1.0``; ``2**53 + 1 > 2.0**53``), strings and identifiers by their text in
  code-point order, booleans only for (in)equality with booleans;
* a value of another kind than the operand never satisfies an ordering or
  (in)equality, so each kind has its own sorted run and a comparison looks in one.

Values arrive as the adapter encodes them (octopus/adapter.py): ``int``, ``float``,
``str``, identifiers as one-element lists ``[text]``, ``bool``.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator, Sequence
from itertools import compress, repeat
from operator import is_not
from types import NoneType
from typing import Any

__all__ = ["KeyIndex", "Run", "SortedPairs", "Span", "kind_of", "name_order", "sorted_runs"]

#: Pairs per chunk: a chunk splits at twice this and merges with a neighbour below a
#: quarter. Inserting moves at most 2 x CHUNK pointers; ranges walk whole chunks.
CHUNK = 512

NUMBER, TEXT, BOOL = 0, 1, 2


def kind_of(value: Any) -> tuple[int, Any]:
    """(kind, comparable value) of an encoded value: identifiers compare as their text,
    booleans are never numbers."""
    t = type(value)
    if t is bool:
        return BOOL, value
    if t is int or t is float:
        return NUMBER, value
    if t is list:
        return TEXT, str.__str__(value[0])
    if isinstance(value, str):
        return TEXT, str.__str__(value)
    raise TypeError(f"not an indexable value: {type(value).__name__}")


def _compact(vals: list[Any]) -> Any:
    """A chunk of values as a C array of 64-bit integers when they all are (8 bytes a
    value instead of a pointer and a 32-byte int), else the list."""
    try:
        return array("q", vals)
    except (TypeError, OverflowError):
        return vals


class SortedPairs:
    """``(value, name)`` pairs of one kind, sorted by value then name, kept in chunks
    (a list of sorted lists: a B-tree of height two).

    Values and names sit in parallel sequences, so an entry costs two pointers (a
    chunk of integers is an ``array('q')``: 8 bytes, no int object). Every chunk is
    non-empty; ``_maxv``/``_maxn`` hold each chunk's last pair, for bisection.
    """

    __slots__ = ("_len", "_maxn", "_maxv", "_names", "_vals")

    def __init__(self) -> None:
        self._vals: list[list[Any]] = []
        self._names: list[list[str]] = []
        self._maxv: list[Any] = []
        self._maxn: list[str] = []
        self._len = 0

    @classmethod
    def from_sorted(cls, vals: list[Any], names: list[str]) -> SortedPairs:
        """From pairs already sorted by (value, name)."""
        self = cls()
        for start in range(0, len(vals), CHUNK):
            v, n = _compact(vals[start:start + CHUNK]), names[start:start + CHUNK]
            self._vals.append(v)
            self._names.append(n)
            self._maxv.append(v[-1])
            self._maxn.append(n[-1])
        self._len = len(vals)
        return self

    def __len__(self) -> int:
        return self._len

    # --- locating ----------------------------------------------------------------------

    def _chunk_of(self, v: Any, n: str) -> int:
        """The first chunk whose last pair is >= (v, n); the number of chunks if none."""
        maxv = self._maxv
        i = bisect_left(maxv, v)
        if i < len(maxv) and maxv[i] == v:   # chunks ending with v: their last names rise
            i = bisect_left(self._maxn, n, i, bisect_right(maxv, v, i))
        return i

    def _at(self, c: int, v: Any, n: str) -> int:
        """Where (v, n) is or would go in chunk ``c``."""
        vals = self._vals[c]
        lo = bisect_left(vals, v)
        if lo < len(vals) and vals[lo] == v:
            return bisect_left(self._names[c], n, lo, bisect_right(vals, v, lo))
        return lo

    def _first_ge(self, v: Any) -> tuple[int, int]:
        c = bisect_left(self._maxv, v)
        return (c, bisect_left(self._vals[c], v)) if c < len(self._vals) else (c, 0)

    def _first_gt(self, v: Any) -> tuple[int, int]:
        c = bisect_right(self._maxv, v)
        return (c, bisect_right(self._vals[c], v)) if c < len(self._vals) else (c, 0)

    # --- changes -------------------------------------------------------------------------

    def add(self, v: Any, n: str) -> None:
        """Insert the pair (the caller never inserts one that is there)."""
        self._len += 1
        if not self._vals:
            self._vals.append([v])
            self._names.append([n])
            self._maxv.append(v)
            self._maxn.append(n)
            return
        c = self._chunk_of(v, n)
        if c == len(self._vals):
            c -= 1          # beyond every pair: the last chunk grows
        vals, names = self._vals[c], self._names[c]
        i = self._at(c, v, n)
        try:
            vals.insert(i, v)
        except (TypeError, OverflowError):      # a float or a big int into an array
            vals = self._vals[c] = list(vals)
            vals.insert(i, v)
        names.insert(i, n)
        if i == len(vals) - 1:
            self._maxv[c] = v
            self._maxn[c] = n
        if len(vals) > 2 * CHUNK:
            self._split(c)

    def remove(self, v: Any, n: str) -> bool:
        """Remove the pair; False if it was not there."""
        c = self._chunk_of(v, n)
        if c == len(self._vals):
            return False
        vals, names = self._vals[c], self._names[c]
        i = self._at(c, v, n)
        if i == len(vals) or names[i] != n or vals[i] != v:
            return False
        del vals[i]
        del names[i]
        self._len -= 1
        if not vals:
            del self._vals[c], self._names[c], self._maxv[c], self._maxn[c]
        else:
            if i == len(vals):
                self._maxv[c] = vals[-1]
                self._maxn[c] = names[-1]
            if len(vals) < CHUNK // 4 and len(self._vals) > 1:
                self._merge(c)
        return True

    def _split(self, c: int) -> None:
        vals, names = self._vals[c], self._names[c]
        half = len(vals) // 2
        self._vals[c:c + 1] = [vals[:half], vals[half:]]
        self._names[c:c + 1] = [names[:half], names[half:]]
        self._maxv[c:c + 1] = [vals[half - 1], vals[-1]]
        self._maxn[c:c + 1] = [names[half - 1], names[-1]]

    def _merge(self, c: int) -> None:
        """Fold chunk ``c`` into a neighbour (splitting again if that grows too big)."""
        left = c - 1 if c > 0 else c
        a, b = self._vals[left], self._vals[left + 1]
        self._vals[left] = a + b if a.__class__ is b.__class__ else list(a) + list(b)
        self._names[left] += self._names[left + 1]
        self._maxv[left] = self._maxv[left + 1]
        self._maxn[left] = self._maxn[left + 1]
        del self._vals[left + 1], self._names[left + 1], self._maxv[left + 1], \
            self._maxn[left + 1]
        if len(self._vals[left]) > 2 * CHUNK:
            self._split(left)

    # --- reading -------------------------------------------------------------------------

    def __contains__(self, pair: tuple[Any, str]) -> bool:
        return self.contains(*pair)

    def contains(self, v: Any, n: str) -> bool:
        """Whether the pair (v, n) is here."""
        maxv = self._maxv
        c = bisect_left(maxv, v)
        if c == len(maxv):
            return False
        if maxv[c] == v:
            c = bisect_left(self._maxn, n, c, bisect_right(maxv, v, c))
            if c == len(maxv):
                return False
        vals = self._vals[c]
        lo = bisect_left(vals, v)
        if lo == len(vals) or vals[lo] != v:
            return False
        names = self._names[c]
        i = bisect_left(names, n, lo, bisect_right(vals, v, lo))
        return i < len(names) and names[i] == n and vals[i] == v

    def chunks_of(self, v: Any) -> int:
        """How many chunks hold value v, give or take one: a cheap upper bound of its
        pairs (times 2 x CHUNK)."""
        maxv = self._maxv
        return bisect_right(maxv, v) - bisect_left(maxv, v)

    def span(self, lo: Any, lo_open: bool, hi: Any, hi_open: bool, *, bounded_lo: bool = True,
             bounded_hi: bool = True) -> Span:
        """The pairs with ``lo < / <= value < / <= hi`` (an unbounded side: every value)."""
        start = ((self._first_gt(lo) if lo_open else self._first_ge(lo)) if bounded_lo
                 else (0, 0))
        end = ((self._first_ge(hi) if hi_open else self._first_gt(hi)) if bounded_hi
               else (len(self._vals), 0))
        return Span(self, start, end)

    def everything(self) -> Span:
        return Span(self, (0, 0), (len(self._vals), 0))


class Span:
    """A run of consecutive pairs of a :class:`SortedPairs`, from ``start`` (chunk,
    offset) to ``end`` (exclusive), valid until the pairs change."""

    __slots__ = ("_end", "_pairs", "_start")

    def __init__(self, pairs: SortedPairs, start: tuple[int, int], end: tuple[int, int]) -> None:
        self._pairs, self._start, self._end = pairs, start, end

    def chunks(self) -> int:
        """How many chunks the span touches (a cheap measure of its size)."""
        (c0, i0), (c1, i1) = self._start, self._end
        return 0 if (c0, i0) >= (c1, i1) else c1 - c0 + (i1 > 0)

    def intersect(self, other: Span) -> Span | None:
        """The pairs in both spans (None if they are of different runs)."""
        if other._pairs is not self._pairs:
            return None
        return Span(self._pairs, max(self._start, other._start), min(self._end, other._end))

    def count(self, limit: int) -> int:
        """The number of pairs, or some number > ``limit`` once it is known to be more
        (a span over many chunks costs one addition per chunk up to the limit)."""
        (c0, i0), (c1, i1) = self._start, self._end
        if (c0, i0) >= (c1, i1):
            return 0
        chunks = self._pairs._vals
        if c0 == c1:
            return i1 - i0
        total = len(chunks[c0]) - i0
        for c in range(c0 + 1, c1):
            if total > limit:
                return total
            total += len(chunks[c])
        return total + i1

    def names(self) -> Iterator[str]:
        (c0, i0), (c1, i1) = self._start, self._end
        if (c0, i0) >= (c1, i1):
            return
        chunks = self._pairs._names
        if c0 == c1:
            yield from chunks[c0][i0:i1]
            return
        yield from chunks[c0][i0:]
        for c in range(c0 + 1, c1):
            yield from chunks[c]
        if i1:
            yield from chunks[c1][:i1]

    def name_list(self) -> list[str]:
        (c0, i0), (c1, i1) = self._start, self._end
        if (c0, i0) >= (c1, i1):
            return []
        chunks = self._pairs._names
        if c0 == c1:
            return chunks[c0][i0:i1]
        out = chunks[c0][i0:]
        for c in range(c0 + 1, c1):
            out += chunks[c]
        if i1:
            out += chunks[c1][:i1]
        return out


#: A key's pairs of one kind, sorted by (value, name): the comparable values and, for
#: each, the position of its record in the names the runs were sorted from.
Run = tuple[list[Any], list[int]]


def sorted_runs(names: Sequence[str], values: Sequence[Any],
                by_name: Sequence[int] | None = None) -> list[Run]:
    """The pairs ``(values[i], names[i])`` sorted into one run per kind (numbers, texts,
    booleans), as :meth:`KeyIndex.from_runs_at` takes them; ``values[i]`` is None where
    record ``names[i]`` has no value of the key. ``by_name``, if given, is every
    position in the order of its name (:func:`name_order`: several keys of the same
    names sort them once).

    Two stable sorts of positions, by name and then by value, give (value, name) order
    without comparing a single tuple: Python's sort of a million positions keyed by
    ints is ~0.4 s, and it is adaptive, so names that arrive nearly in order (as
    clause order often has them) cost next to nothing. Sorting (value, name) tuples
    took 2.3 s, and Prolog's msort/2 of Value-Name pairs 2-3 s."""
    kinds = set(map(type, values))
    order: Sequence[int] = range(len(values)) if by_name is None else by_name
    if kinds <= _NUMBERS:
        comparable: Sequence[Any] = values
        if NoneType in kinds:
            number = list(compress(order, map(is_not, map(values.__getitem__, order),
                                              repeat(None))))
        else:
            number = list(order)
        runs: list[list[int]] = [number, [], []]
    else:
        runs = [[], [], []]
        comparable = list(values)
        number, text, boolean = runs
        for i in order:
            v = values[i]
            t = v.__class__
            if t is int or t is float:
                number.append(i)
            elif t is str:
                text.append(i)
            elif t is list:
                text.append(i)
                comparable[i] = str.__str__(v[0])
            elif t is bool:
                boolean.append(i)
            elif v is None:
                continue
            elif isinstance(v, str):
                text.append(i)
                comparable[i] = str.__str__(v)
            else:
                raise TypeError(f"not an indexable value: {t.__name__}")
    out: list[Run] = []
    by_value = comparable.__getitem__
    for positions in runs:
        if by_name is None:
            positions.sort(key=names.__getitem__)
        positions.sort(key=by_value)
        out.append(([comparable[i] for i in positions], positions))
    return out


def name_order(names: Sequence[str]) -> list[int]:
    """Every position of ``names`` in the order of its name."""
    return sorted(range(len(names)), key=names.__getitem__)


_NUMBERS = {int, float, NoneType}


class KeyIndex:
    """The ordered index of one attribute key: a :class:`SortedPairs` per kind."""

    __slots__ = ("runs",)

    def __init__(self) -> None:
        self.runs = (SortedPairs(), SortedPairs(), SortedPairs())

    @classmethod
    def from_column(cls, names: Sequence[str], values: Sequence[Any],
                    by_name: Sequence[int] | None = None) -> KeyIndex:
        """From every record's name and (encoded) value of the key (None: it has
        none), in any order (``by_name``: see :func:`sorted_runs`)."""
        if len(names) != len(values):
            raise ValueError(f"{len(names)} names for {len(values)} values")
        return cls.from_runs_at(names, sorted_runs(names, values, by_name))

    @classmethod
    def from_runs_at(cls, names: Sequence[str], runs: Sequence[Run]) -> KeyIndex:
        """From :func:`sorted_runs` of ``names`` (the index holds these very name
        strings: indexes built from one names list share them)."""
        self = cls()
        built = []
        for vals, positions in runs:
            built.append(SortedPairs.from_sorted(vals, [names[i] for i in positions]))
        self.runs = (built[0], built[1], built[2])
        return self

    @classmethod
    def build(cls, values: Iterable[Any], names: Iterable[str]) -> KeyIndex:
        """From every record's (encoded) value of the key and its name."""
        return cls.from_column(list(names), list(values))

    def __len__(self) -> int:
        return sum(len(r) for r in self.runs)

    def share_names(self, donor: KeyIndex) -> None:
        """Hold the very name strings ``donor`` holds, where both have a record: a
        new index's names come from Prolog as new strings, and each costs ~70 bytes
        (a temporary map of the donor's names is the price, once)."""
        shared: dict[str, str] = {}
        for run in donor.runs:
            for chunk in run._names:
                for n in chunk:
                    shared[n] = n
        for run in self.runs:
            for c, chunk in enumerate(run._names):
                chunk[:] = [shared.get(n, n) for n in chunk]
                run._maxn[c] = chunk[-1]

    def add(self, value: Any, name: str) -> None:
        kind, v = kind_of(value)
        self.runs[kind].add(v, name)

    def remove(self, value: Any, name: str) -> bool:
        kind, v = kind_of(value)
        return self.runs[kind].remove(v, name)

    def _run(self, value: Any) -> tuple[SortedPairs, Any]:
        """The run of ``value``'s kind and its comparable form (kind_of, inlined: this
        is on every query's path)."""
        t = value.__class__
        if t is int or t is float:
            return self.runs[NUMBER], value
        if t is bool:
            return self.runs[BOOL], value
        if t is list:
            return self.runs[TEXT], str.__str__(value[0])
        return self.runs[TEXT], str.__str__(value)

    def holds(self, value: Any, name: str) -> bool:
        """Whether record ``name`` has a value equal to ``value`` (docs/language.md)."""
        run, v = self._run(value)
        return run.contains(v, name)

    def everyone_has(self, value: Any, records: int) -> bool:
        """Whether all ``records`` records have a value equal to ``value`` (the index
        holds that many pairs, all of that value): an equality that constrains nothing."""
        run, v = self._run(value)
        return (run._len == records and records > 0 and run._vals[0][0] == v
                and run._maxv[-1] == v)

    def estimate(self, op: str, operand: Any) -> int:
        """A cheap measure of how many pairs :meth:`spans` gives (in chunks, to compare
        constraints before counting any)."""
        if op == "eq":
            run, v = self._run(operand)
            maxv = run._maxv
            return bisect_right(maxv, v) - bisect_left(maxv, v)
        return sum(len(r._vals) for r in self.runs) + 1

    def eq_span(self, operand: Any) -> Span:
        """The pairs whose value equals ``operand`` (both ends located inline: the
        commonest constraint of all)."""
        run, v = self._run(operand)
        maxv = run._maxv
        n = len(maxv)
        c0 = bisect_left(maxv, v)
        if c0 == n:
            return Span(run, (n, 0), (n, 0))
        if maxv[c0] != v:
            # Chunk c0 ends with a greater value: every pair of v is in it. A value
            # most often has one pair (an id), found without a second bisection.
            vals = run._vals[c0]
            lo = bisect_left(vals, v)
            if vals[lo] != v:
                hi = lo
            elif vals[lo + 1] != v:
                hi = lo + 1
            else:
                hi = bisect_right(vals, v, lo)
            return Span(run, (c0, lo), (c0, hi))
        c1 = bisect_right(maxv, v, c0)
        return Span(run, (c0, bisect_left(run._vals[c0], v)),
                    (c1, bisect_right(run._vals[c1], v)) if c1 < n else (n, 0))

    def spans(self, op: str, operand: Any) -> list[Span]:
        """The pairs whose value satisfies ``op operand`` (``eq lt le gt ge``), or for
        ``ne``, ``any`` and ``re`` a superset: the values of the operand's kind, every
        value, the text values."""
        if op == "eq":
            return [self.eq_span(operand)]
        if op == "any":
            return [r.everything() for r in self.runs]
        if op == "re":
            return [self.runs[TEXT].everything()]
        run, v = self._run(operand)
        if op == "lt":
            return [Span(run, (0, 0), run._first_ge(v))]
        if op == "le":
            return [Span(run, (0, 0), run._first_gt(v))]
        if op == "gt":
            return [Span(run, run._first_gt(v), (len(run._vals), 0))]
        if op == "ge":
            return [Span(run, run._first_ge(v), (len(run._vals), 0))]
        return [run.everything()]         # ne: some value of the operand's kind
