:- module(octopus_match,
          [ prepare_query/3,          % +NamePattern0, +Constraints0, -Query
            prepare_constraints/2,    % +Constraints0, -Constraints
            import_value/2,           % +Value0, -Value
            record_matches/3,         % +Query, +Name, +Dict
            constraints_hold/2,       % +Constraints, +Dict
            index_hash/2,             % +Value, -Hash
            regex_compile/2           % +Pattern, -Regex
          ]).

/** <module> Pure record matching for the Octopus store

This module knows how a query matches a record (docs/language.md) and nothing about
where records are kept. It never asserts store facts; its only state is a bounded cache
of compiled regular expressions.

Value representation (what the store keeps and what travels back to Python):

  | kind        | Prolog term      | Python (janus) |
  |-------------|------------------|----------------|
  | integer     | integer          | int            |
  | float       | float            | float          |
  | string      | string           | str            |
  | identifier  | [String]         | [str]          |
  | boolean     | @(true), @(false)| bool           |

From Python, a `str` arrives as an atom and is taken as a string; an identifier arrives
as the one-element list `[Atom]`; booleans arrive as `@(true)`/`@(false)`. Identifiers
are one-element lists rather than pairs because janus-swi 1.5.3 leaks the elements of
every pair it converts to a Python tuple (see octopus/adapter.py); lists convert
cleanly.

A prepared query is `q(NamePattern, Constraints)`:

  - NamePattern is `exact(Name)`, `any` or `re(Regex)`;
  - each constraint is `c(Key, Op, Value)`, Op one of `eq ne lt le gt ge any re`
    (for `re`, Value is a compiled regex).

Matching rules: a constrained key the record lacks never matches (also for `ne`);
numbers compare numerically (1 =:= 1.0), strings and identifiers by their text in
code-point (= UTF-8 byte) order, booleans only to booleans and only for (in)equality; a
type mismatch is no match, never an error. Regexes are PCRE searches (not full matches)
run under a match limit, so a catastrophic pattern raises
`resource_error(match_limit)` instead of hanging.
*/

:- use_module(library(pcre)).
:- use_module(library(error)).
:- use_module(library(apply)).
:- use_module(library(lists)).
:- use_module(errors).

%!  prepare_query(+NamePattern0, +Constraints0, -Query) is det.
%
%   Turn the query as it comes from Python into q(NamePattern, Constraints).
%   NamePattern0 is a name atom, `@(none)` for `_`, or `re-Pattern`. Raises
%   octopus_error(query, Message) for an invalid regex.

prepare_query(NP0, Cs0, q(NP, Cs)) :-
    prepare_name(NP0, NP),
    prepare_constraints(Cs0, Cs).

prepare_name(@(none), any) :- !.
prepare_name(re-Pattern, re(Re)) :- !,
    regex_compile(Pattern, Re).
prepare_name(Name, exact(Name)) :-
    must_be(atom, Name).

%!  prepare_constraints(+Constraints0, -Constraints) is det.
%
%   Constraints0 is a list of -(Key, Op, Value) triples from Python.

prepare_constraints(Cs0, Cs) :-
    maplist(prepare_constraint, Cs0, Cs).

prepare_constraint(-(Key, Op0, V0), c(Key, Op, V)) :-
    must_be(atom, Key),
    must_be(oneof([eq, ne, lt, le, gt, ge, any, re]), Op0),
    Op = Op0,
    (   Op == re
    ->  regex_compile(V0, V)
    ;   Op == any
    ->  V = V0
    ;   import_value(V0, V)
    ).

%!  import_value(+Value0, -Value) is det.
%
%   Convert a value as janus delivers it from Python into its stored form.

import_value(V, V) :- number(V), !.
import_value(A, S) :-
    atom(A), !,
    atom_string(A, S).
import_value(@(B), @(B)) :- !,
    must_be(boolean, B).
import_value([A], [S]) :- !,
    atom_string(A, S).
import_value(S, S) :-
    string(S), !.
import_value(V, _) :-
    type_error(octopus_value, V).

%!  record_matches(+Query, +Name, +Dict) is semidet.

record_matches(q(NP, Cs), Name, Dict) :-
    name_matches(NP, Name),
    constraints_hold(Cs, Dict).

name_matches(exact(N), Name) :- N == Name.
name_matches(any, _).
name_matches(re(Re), Name) :- re_match(Re, Name).

%!  constraints_hold(+Constraints, +Dict) is semidet.

constraints_hold([], _).
constraints_hold([c(K, Op, V)|Cs], Dict) :-
    get_dict(K, Dict, S),
    holds(Op, S, V),
    constraints_hold(Cs, Dict).

holds(eq, S, V) :- value_eq(S, V).
holds(ne, S, V) :- same_kind(S, V), \+ value_eq(S, V).
holds(lt, S, V) :- ordered(S, V, Order), Order == (<).
holds(le, S, V) :- ordered(S, V, Order), Order \== (>).
holds(gt, S, V) :- ordered(S, V, Order), Order == (>).
holds(ge, S, V) :- ordered(S, V, Order), Order \== (<).
holds(any, _, _).
holds(re, S, Re) :- text(S, T), re_match(Re, T).

value_eq(S, V) :- number(S), !, number(V), S =:= V.
value_eq(@(B), V) :- !, V == @(B).
value_eq(S, V) :- text(S, T1), text(V, T2), T1 == T2.

same_kind(S, V) :- number(S), !, number(V).
same_kind(@(_), V) :- !, V = @(_).
same_kind(S, V) :- text(S, _), text(V, _).

%   ordered(+Stored, +Value, -Order): numbers numerically, text by code points;
%   fails for booleans and mixed kinds.
ordered(S, V, Order) :-
    number(S), !,
    number(V),
    (   S < V -> Order = (<)
    ;   S > V -> Order = (>)
    ;   Order = (=)
    ).
ordered(S, V, Order) :-
    text(S, T1), text(V, T2),
    compare(Order, T1, T2).

text(S, S) :- string(S), !.
text([S], S).

%!  index_hash(+Value, -Hash) is det.
%
%   Hash of a value such that values equal under value_eq/2 hash alike: integral
%   floats hash as integers, identifiers as their text.

index_hash(V, Hash) :-
    hash_form(V, F),
    term_hash(F, Hash).

hash_form(V, F) :-
    float(V), !,
    (   V =:= float_integer_part(V)
    ->  F is integer(V)
    ;   F = V
    ).
hash_form([S], S) :- !.
hash_form(V, V).

%!  regex_compile(+Pattern, -Regex) is det.
%
%   Compile Pattern (atom or string) with a match limit, caching the result. Raises
%   octopus_error(query, Message) for bad syntax or a pattern that sets its own limits.
%   The cache is bounded (oldest entries go first); library(pcre)'s own cache is
%   not used because it never shrinks.

:- dynamic regex_cached/2.

regex_cache_limit(1024).
match_limit_prefix("(*LIMIT_MATCH=100000)(*LIMIT_DEPTH=10000)").

regex_compile(Pattern, Re) :-
    regex_cached(Pattern, Re0), !,
    Re = Re0.
regex_compile(Pattern, Re) :-
    atom_string(Pattern, S),
    (   sub_string(S, _, _, _, "(*LIMIT_")
    ->  octopus_error(query, "a regular expression may not set its own match limits")
    ;   true
    ),
    match_limit_prefix(Prefix),
    string_concat(Prefix, S, Limited),
    catch(re_compile(Limited, Re, []), error(E, _), bad_regex(S, E)),
    remember_regex(Pattern, Re).

bad_regex(S, syntax_error(Why)) :- !,
    octopus_error(query, "invalid regular expression r'~w': ~w", [S, Why]).
bad_regex(S, E) :-
    octopus_error(query, "invalid regular expression r'~w': ~q", [S, E]).

remember_regex(Pattern, Re) :-
    flag(octopus_regex_cache_size, N, N+1),
    regex_cache_limit(Limit),
    (   N >= Limit
    ->  (   retract(regex_cached(_, _))
        ->  flag(octopus_regex_cache_size, M, M-1)
        ;   true
        )
    ;   true
    ),
    assertz(regex_cached(Pattern, Re)).
