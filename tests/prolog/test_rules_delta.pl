:- module(test_rules_delta, []).
:- use_module(library(plunit)).
:- use_module(library(apply)).
:- use_module(library(lists)).
:- use_module('../../prolog/rules_delta').

% The factoring of a source's generators (rules_delta.pl, factored/3): the disjunction
% keeps its solutions, and only goals alike up to the clause's arguments are shared.

e(1, a). e(1, b). e(2, c). e(3, a).
f(a, x). f(b, y). f(c, x).

% Branches over the clause arguments In and Out, each a copy with its own variables.
branches(In, Out, [ ( e(In, V1), f(V1, W1), Out = one(W1) ),
                     ( e(In, V2), f(V2, x), Out = two(V2) ),
                     ( e(In, V3), Out = three(V3) ),
                     ( f(In, W4), Out = four(W4) ),
                     ( e(In, V5), f(V5, W5), Out = one(W5) ) ]).

% The rows as a set: a generator may find a row more than once (the candidates are
% sorted and grouped), and identical branches are kept once.
solutions(Body, Out, Set) :-
    findall(Out, call(Body), All),
    sort(All, Set).

:- begin_tests(factored).

test(same_solutions) :-
    forall(member(In, [1, 2, 3, 4, a, b, _]),
           ( branches(In, Out, Goals),
             foldl([G, D0, (D0 ; G)]>>true, Goals, fail, Plain),
             solutions(test_rules_delta:Plain, Out, Expected),
             branches(In1, Out1, Goals1),
             octopus_rules_delta:factored(Goals1, [In1, Out1], Body),
             In1 = In,
             solutions(test_rules_delta:Body, Out1, Got),
             Got == Expected )).

test(prefix_taken_out) :-
    branches(In, Out, Goals),
    octopus_rules_delta:factored(Goals, [In, Out], Body),
    Body = ( (e(In, _), Rest) ; _ ),
    Rest = ( _ ; _ ).                       % the branches starting with e(In, _)

test(alike_binds_own_variables) :-
    octopus_rules_delta:alike(g(S, L1), g(S, L2), [S]),
    L1 == L2.

test(shared_never_renamed, [fail]) :-
    octopus_rules_delta:alike(g(S), g(T), [S, T]).

test(no_aliasing, [fail]) :-
    % binding B to C and A to B would make g(A, B) g(C, C)
    octopus_rules_delta:alike(g(A, B), g(B, _), []),
    var(A).

test(identical_branches) :-
    octopus_rules_delta:factored([(X = 1), (X = 1)], [X], Body),
    findall(X, call(Body), Xs),
    Xs == [1].                              % kept once

:- end_tests(factored).
