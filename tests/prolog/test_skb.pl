:- module(test_skb, []).
:- use_module(library(plunit)).
:- use_module('../../prolog/skb').

load(Text, Reply) :-
    kb_load_begin(tkb, taux, text-Text, _),
    catch(( chunks(_), kb_load_commit(tkb, taux, @(none), Reply) ), E, Reply = error(E)).

chunks(R) :-
    kb_load_chunk(tkb, taux, 2, R0),
    (   R0 = [_, @(false)] -> chunks(R) ; R = R0 ).

:- begin_tests(skb, [setup(kb_create(tkb, taux, _)), cleanup(kb_destroy(tkb, taux, _))]).

test(load_and_query) :-
    load('p(1). p(2). q(X) :- p(X), X > 1.', N), N == 3,
    kb_query(tkb, 'q(X)', [], @(none), R), R == [solution{'X':2}].
test(bindings) :-
    kb_query(tkb, 'p(X), X == Y', ['Y'-2], @(none), R), R == [solution{'X':2}].
test(limit) :-
    kb_query(tkb, 'p(X)', [], 1, R), R == [solution{'X':1}].
test(syntax_error_loads_nothing) :-
    load('r(1). r(2) r(3).', R), R = error(error(octopus_error(kb, _), _)),
    \+ current_predicate(tkb:r/1).
test(lives_in_its_module) :-
    load(':- dynamic rec/3. rec(a, 1, x).', _),
    \+ current_predicate(user:rec/3),
    kb_query(tkb, 'rec(A, _, _)', [], @(none), [solution{'A':a}]).
test(goal_error_is_an_error_term,
     [throws(error(existence_error(procedure, _), _))]) :-
    kb_query(tkb, 'undefined_here(1)', [], @(none), _).
test(export_pairs_and_dicts) :-
    kb_query(tkb, 'X = a-b, Y = _{k: 1-2}', [], @(none), [S]),
    S.'X' = _{'$pair': [a, b]},
    S.'Y' = _{'$dict': _{k: _{'$pair': [1, 2]}}}.
test(export_compound) :-
    kb_query(tkb, 'X = f(a, "s")', [], @(none), [Sol]), Sol.'X' == "f(a,\"s\")".

:- end_tests(skb).
