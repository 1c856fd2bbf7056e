:- module(test_skb, []).
:- use_module(library(plunit)).
:- use_module('../../prolog/skb').

load(Text, Reply) :-
    kb_load_begin(tkb, taux, text-Text, _),
    chunks(R0),
    (   R0 = -('$error', _, _) -> Reply = R0 ; kb_load_commit(tkb, taux, @(none), Reply) ).

chunks(R) :-
    kb_load_chunk(tkb, taux, 2, R0),
    (   R0 = _-(@(false)) -> chunks(R) ; R = R0 ).

:- begin_tests(skb, [setup(kb_create(tkb, taux, _)), cleanup(kb_destroy(tkb, taux, _))]).

test(load_and_query) :-
    load('p(1). p(2). q(X) :- p(X), X > 1.', N), N == 3,
    kb_query(tkb, 'q(X)', [], @(none), R), R == [['X'-2]].
test(bindings) :-
    kb_query(tkb, 'p(X), X == Y', ['Y'-2], @(none), R), R == [['X'-2]].
test(limit) :-
    kb_query(tkb, 'p(X)', [], 1, R), R == [['X'-1]].
test(syntax_error_loads_nothing) :-
    load('r(1). r(2) r(3).', R), R = -('$error', kb, _),
    \+ current_predicate(tkb:r/1).
test(lives_in_its_module) :-
    load(':- dynamic rec/3. rec(a, 1, x).', _),
    \+ current_predicate(user:rec/3),
    kb_query(tkb, 'rec(A, _, _)', [], @(none), [['A'-a]]).
test(goal_error_is_data) :-
    kb_query(tkb, 'undefined_here(1)', [], @(none), R), R = -('$error', kb, _).
test(export_compound) :-
    kb_query(tkb, 'X = f(a, "s")', [], @(none), [['X'-S]]), S == "f(a,\"s\")".

:- end_tests(skb).
