:- module(test_skb, []).
:- use_module(library(plunit)).
:- use_module('../../prolog/skb').

%   [Timeout, Inferences, StackBytes, Solutions, ReplyBytes]
limits([5.0, 1000000, 67108864, 1000, 1000000]).

load(Text, Reply) :-
    limits(L),
    kb_load_begin(tkb, taux, text-Text, _),
    catch(( chunks(_), kb_load_commit(tkb, taux, @(none), L, Reply) ), E, Reply = error(E)).

chunks(R) :-
    kb_load_chunk(tkb, taux, 2, R0),
    (   R0 = [_, @(false)] -> chunks(R) ; R = R0 ).

query(Goal, Bindings, Max, Reply) :-
    limits(L),
    kb_query(tkb, taux, Goal, Bindings, L, [Max, @(false)], Reply).

refused(Goal) :-
    catch(query(Goal, [], 10, _), error(octopus_error(kb, _), _), true).

:- begin_tests(skb, [setup(kb_create(tkb, taux, _)), cleanup(kb_destroy(tkb, taux, _))]).

test(load_and_query) :-
    load('p(1). p(2). q(X) :- p(X), X > 1.', N), N == 3,
    query('q(X)', [], 10, R), R == [solution{'X':2}].
test(bindings) :-
    query('p(X), X == Y', ['Y'-2], 10, R), R == [solution{'X':2}].
test(limit) :-
    query('p(X)', [], 1, R), R == [solution{'X':1}].
test(strict_limit, [throws(error(octopus_error(kb, _), _))]) :-
    limits(L),
    kb_query(tkb, taux, 'between(1, 5, X)', [], L, [3, @(true)], _).
test(syntax_error_loads_nothing) :-
    load('r(1). r(2) r(3).', R), R = error(error(octopus_error(kb, _), _)),
    \+ current_predicate(tkb:r/1).
test(lives_in_its_module) :-
    load(':- dynamic rec/3. rec(a, 1, x).', _),
    \+ current_predicate(user:rec/3),
    query('rec(A, _, _)', [], 10, [solution{'A':a}]).
test(unknown_procedure, [throws(error(octopus_error(kb, _), _))]) :-
    query('undefined_here(1)', [], 10, _).
test(export_pairs_and_dicts) :-
    query('X = a-b, Y = _{k: 1-2}', [], 10, [S]),
    S.'X' = _{'$pair': [a, b]},
    S.'Y' = _{'$dict': _{k: _{'$pair': [1, 2]}}}.
test(export_compound) :-
    query('X = f(a, "s")', [], 10, [Sol]), Sol.'X' == "f(a,\"s\")".
test(sandbox) :-
    forall(member(G, [ 'halt', 'shell(ls)', 'sleep(1)', 'M = user, M:foo',
                       'lists:append(_, _, _)', 'assertz((x :- true))',
                       'set_prolog_flag(double_quotes, codes)' ]),
           refused(G)).
test(runaway, [throws(error(octopus_error(kb, _), _))]) :-
    query('repeat, fail', [], 10, _).
test(iterator) :-
    limits(L),
    kb_iter_open(tkb, taux, 'between(1, 3, X)', [], L, Id),
    kb_iter_next(tkb, taux, Id, [2, 5.0, 1000], [S1, D1]),
    kb_iter_next(tkb, taux, Id, [2, 5.0, 1000], [S2, D2]),
    S1 == [solution{'X':1}, solution{'X':2}], D1 == @(false),
    S2 == [solution{'X':3}], D2 == @(true),
    \+ taux:'$iter'(Id, _, _, _).

:- end_tests(skb).
