:- module(octopus_match,
          [ prepare_query/3,          % +NamePattern0, +Constraints0, -Query
            prepare_trigger_query/3,  % +NamePattern0, +Constraints0, -Query
            prepare_constraints/2,    % +Constraints0, -Constraints
            import_value/2,           % +Value0, -Value
            record_matches/3,         % +Query, +Name, +Dict
            constraints_hold/2,       % +Constraints, +Dict
            compare_numbers/3,        % -Order, +Number1, +Number2
            index_hash/2,             % +Value, -Hash
            check_name/1              % +Name
          ]).
:- reexport(regex,
            [ regex_compile/2,        % +Pattern, -Regex
              regex_compile/3,        % +Kind, +Pattern, -Regex
              regex_match/3,          % +Regex, +Text, +Where
              regex_limit/2,          % ?Limit, ?Value
              with_regex_budget/1     % :Goal
            ]).
:- use_module(regex, [probe_regex/1]).

/** <module> Pure record matching for the Octopus store

This module knows how a query matches a record (docs/language.md, docs/decisions.md)
and nothing about where records are kept. It has no state of its own (the bounded
cache of compiled regular expressions is prolog/regex.pl's).

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
    (for `re`, Value is a compiled regex, see regex_compile/3).

Matching rules: a constrained key the record lacks never matches (also for `ne`);
numbers compare by their exact values, as Python compares them (1 = 1.0, but
2^53+1 > 2^53 as a float: never through a conversion to float); strings and
identifiers by their text in code-point (= UTF-8 byte) order; booleans only to
booleans and only for (in)equality; a type mismatch is no match, never an error.

Regular expressions are compiled and run by prolog/regex.pl (module octopus_regex),
which bounds what one pattern, one search and one query may cost; this module
re-exports its predicates.
*/

:- use_module(library(error)).
:- use_module(library(apply)).
:- use_module(library(lists)).
:- use_module(errors).

%!  prepare_query(+NamePattern0, +Constraints0, -Query) is det.
%
%   Turn the query as it comes from Python into q(NamePattern, Constraints).
%   NamePattern0 is a name atom, `@(none)` for `_`, or `re-Pattern`. Raises
%   octopus_error(query, Message) for an invalid regex or name.

prepare_query(NP0, Cs0, Q) :-
    prepare_query(query, NP0, Cs0, Q).

prepare_query(Kind, NP0, Cs0, q(NP, Cs)) :-
    prepare_name(NP0, Kind, NP),
    maplist(prepare_constraint(Kind), Cs0, Cs).

prepare_name(@(none), _, any) :- !.
prepare_name(re-Pattern, Kind, re(Re)) :- !,
    regex_compile(Kind, Pattern, Re).
prepare_name(Name, _, exact(Name)) :-
    must_be(atom, Name),
    check_name(Name).

%!  prepare_trigger_query(+NamePattern0, +Constraints0, -Query) is det.
%
%   As prepare_query/3, for a query that will run on every write (a trigger or a
%   subscription): its regexes get the smaller trigger match limit, and each must
%   stay within it on the probe texts of probe_text/3, else octopus_error(query, Message)
%   is raised.

prepare_trigger_query(NP0, Cs0, Q) :-
    prepare_query(trigger, NP0, Cs0, Q),
    Q = q(NP, Cs),
    (   NP = re(Rx) -> probe_regex(Rx) ; true ),
    forall(member(c(_, re, Rx), Cs), probe_regex(Rx)).

%!  check_name(+Name) is det.
%
%   Raise octopus_error(query, Message) if Name is longer than the name limit.

check_name(Name) :-
    atom_length(Name, Length),
    regex_limit(name_length, Max),
    (   Length =< Max
    ->  true
    ;   sub_atom(Name, 0, 40, _, Start),
        octopus_error(query, "a record name may have at most ~D characters; ~w... has ~D",
                      [Max, Start, Length])
    ).

%!  prepare_constraints(+Constraints0, -Constraints) is det.
%
%   Constraints0 is a list of -(Key, Op, Value) triples from Python.

prepare_constraints(Cs0, Cs) :-
    maplist(prepare_constraint(query), Cs0, Cs).

prepare_constraint(Kind, -(Key, Op0, V0), c(Key, Op, V)) :-
    must_be(atom, Key),
    must_be(oneof([eq, ne, lt, le, gt, ge, any, re]), Op0),
    Op = Op0,
    (   Op == re
    ->  regex_compile(Kind, V0, V)
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
name_matches(re(Re), Name) :- regex_match(Re, Name, name).

%!  constraints_hold(+Constraints, +Dict) is semidet.

constraints_hold([], _).
constraints_hold([c(K, Op, V)|Cs], Dict) :-
    get_dict(K, Dict, S),
    holds(Op, S, V, K),
    constraints_hold(Cs, Dict).

holds(eq, S, V, _) :- value_eq(S, V).
holds(ne, S, V, _) :- same_kind(S, V), \+ value_eq(S, V).
holds(lt, S, V, _) :- ordered(S, V, Order), Order == (<).
holds(le, S, V, _) :- ordered(S, V, Order), Order \== (>).
holds(gt, S, V, _) :- ordered(S, V, Order), Order == (>).
holds(ge, S, V, _) :- ordered(S, V, Order), Order \== (<).
holds(any, _, _, _).
holds(re, S, Re, K) :- text(S, T), regex_match(Re, T, key(K)).

value_eq(S, V) :- number(S), !, number(V), compare_numbers((=), S, V).
value_eq(@(B), V) :- !, V == @(B).
value_eq(S, V) :- text(S, T1), text(V, T2), T1 == T2.

same_kind(S, V) :- number(S), !, number(V).
same_kind(@(_), V) :- !, V = @(_).
same_kind(S, V) :- text(S, _), text(V, _).

%   ordered(+Stored, +Value, -Order): numbers by exact value, text by code points;
%   fails for booleans and mixed kinds.
ordered(S, V, Order) :-
    number(S), !,
    number(V),
    compare_numbers(Order, S, V).
ordered(S, V, Order) :-
    text(S, T1), text(V, T2),
    compare(Order, T1, T2).

text(S, S) :- string(S), !.
text([S], S).

%!  compare_numbers(-Order, +X, +Y) is det.
%
%   Order is the order of the exact values of the numbers X and Y, as Python compares
%   int and float. Prolog's arithmetic comparison turns an integer into a float when
%   the other side is one, so 2^53+1 =:= 2^53.0 holds; this never converts: an
%   integral float is compared as the integer it is exactly, a fractional one through
%   its floor. (Floats are finite here: NaN and infinities are never stored.)

compare_numbers(Order, X, Y) :-
    integer(X), integer(Y), !,
    compare(Order, X, Y).
compare_numbers(Order, X, Y) :-
    float(X), float(Y), !,
    (   X < Y -> Order = (<)
    ;   X > Y -> Order = (>)
    ;   Order = (=)                 % also -0.0 and 0.0, as in Python
    ).
compare_numbers(Order, X, Y) :-
    integer(X), !,
    integer_float_order(X, Y, Order).
compare_numbers(Order, X, Y) :-
    integer_float_order(Y, X, Order0),
    reverse_order(Order0, Order).

integer_float_order(I, F, Order) :-
    (   F =:= float_integer_part(F)         % float against float: exact
    ->  J is truncate(F),                   % exact for an integral float (integer/1
                                            % saturates at 2^63-1 in 9.2.9)
        compare(Order, I, J)
    ;   Floor is floor(F),                  % an integer; I =\= F
        (   I =< Floor -> Order = (<) ; Order = (>) )
    ).

reverse_order(<, >).
reverse_order(=, =).
reverse_order(>, <).

%!  index_hash(+Value, -Hash) is det.
%
%   Hash of a value such that values equal under value_eq/2 hash alike: integral
%   floats hash as the integer they are exactly, identifiers as their text.

index_hash(V, Hash) :-
    hash_form(V, F),
    term_hash(F, Hash).

hash_form(V, F) :-
    float(V), !,
    (   V =:= float_integer_part(V)
    ->  F is truncate(V)                 % exact; integer/1 saturates at 2^63-1
    ;   F = V
    ).
hash_form([S], S) :- !.
hash_form(V, V).
