:- module(octopus_rules_view,
          [ rules_view/3,             % +KB, +Store, -Reply
            rec_/3,                   % +Store, ?Name, -Dict
            view_value/2,             % +Stored, -Value
            view_hash/2,              % +Value, -Hash
            raw_of/2,                 % +Value, -Stored
            table_entry/4,            % +Store, +Key, ?Hash, -Name
            index_build/2,            % +Store, +Key
            index_drop/2,             % +Store, +Key
            index_move/5,             % +Store, +Key, +Name, +Old, +New
            arith/1                   % +Goal
          ]).

/** <module> Rules over live records: the record view and the rules' own index

The knowledge base sees the live records of its engine through two predicates, defined
(static, so knowledge-base code cannot redefine them) in its module KB by rules_view/3:

  - record(Name):         Name (an atom) is a stored record;
  - attr(Name, Key, Value): the record Name has Value for Key. Values have the query
                          language's types: identifiers are atoms, strings SWI
                          strings, numbers numbers, booleans @(true) and @(false).

Both read the store module and nothing else; neither can change it.

The view reads a state s(Store, OverName, Overlay): Store, except that the record
OverName is Overlay (a dict, or none: absent), which is how the delta evaluation
(prolog/rules_delta.pl) sees the store as it was before a change. The code compiled
from rules (prolog/rules_compile.pl) calls rec_/3, view_value/2, view_hash/2,
table_entry/4 and arith/1 of this module directly.

The rules' index: lookups by value (attr(N, class, C) with N unbound) go through
'$rx'(Hash, Key, Name) facts in the store module, kept only for the keys installed
watches and invariants look up that way ('$rx_key'(Key), prolog/rules_compile.pl):
built when the first rule needing it is installed (index_build/2), kept exact by every
write inside its transaction (index_move/5), dropped with the last rule needing it
(index_drop/2). A store without rules pays nothing for it.
*/

:- use_module(library(error)).
:- use_module(library(sandbox), []).
:- use_module(match).


                 /*******************************
                 *          THE VIEW           *
                 *******************************/

%!  rules_view(+KB, +Store, -Reply) is det.
%
%   Give KB the read-only view of Store: record/1 and attr/3, defined (static) in a
%   module of their own, Store_view, and imported into KB. An imported predicate
%   cannot be declared dynamic, asserted or retracted in KB, so knowledge-base code
%   cannot add facts to the view or take its clauses away (a static predicate of
%   KB's own could be turned dynamic by a dynamic/1 directive and then extended).

rules_view(KB, M, @(true)) :-
    must_be(atom, KB),
    must_be(atom, M),
    atom_concat(M, '_view', V),
    forall(view_definition(M, Head, Body),
           ( functor(Head, Name, Arity),
             abolish(V:Name/Arity),
             assertz(V:(Head :- Body)),
             compile_predicates([V:Name/Arity]),
             V:export(Name/Arity),
             (   current_predicate(KB:Name/Arity),      % (no autoloading: the
                 \+ predicate_property(KB:Head, imported_from(_))   % library's record/1)
             ->  abolish(KB:Name/Arity)
             ;   true
             ),
             KB:import(V:Name/Arity)
           )).

view_definition(M, record(N), octopus_rules_view:v_record(s(M, [], none), N)).
view_definition(M, attr(N, K, V), octopus_rules_view:v_attr(s(M, [], none), N, K, V)).

%   v_record(+State, ?Name) is nondet.
%   v_attr(+State, ?Name, ?Key, ?Value) is nondet.
%
%   The view in State: s(Store, OverName, Overlay) reads Store except that the record
%   OverName is Overlay (a dict, or none: absent). Without an overlay OverName is []
%   (never an atom, so never a name).

v_record(s(M, On, Od), X) :-
    (   atom(X)
    ->  (   X == On
        ->  Od \== none
        ;   rec_(M, X, _)
        )
    ;   var(X)
    ->  (   rec_(M, X, _),
            X \== On
        ;   Od \== none,
            X = On
        )
    ).

v_attr(S, X, K, V) :-
    atom(X),
    !,
    v_dict(S, X, D),
    v_get(K, D, V).
v_attr(s(M, On, Od), X, K, V) :-
    var(X),
    (   v_candidate(M, K, V, X),
        X \== On,
        rec_(M, X, D),
        v_get(K, D, V)
    ;   Od \== none,
        X = On,
        v_get(K, Od, V)
    ).

v_dict(s(M, On, Od), X, D) :-
    (   X == On
    ->  Od \== none,
        D = Od
    ;   rec_(M, X, D)
    ).

%   rec_(+Store, ?Name, -Dict) is nondet: the record Name (an atom: the view's names
%   are identifiers) of Store, which holds names as strings.

rec_(M, X, D) :-
    (   atom(X)
    ->  atom_string(X, S),
        M:rec(S, _, D)
    ;   var(X)
    ->  M:rec(S, _, D),
        atom_string(X, S)
    ).

%   v_candidate(+Store, ?Key, ?Value, -Name): names worth looking at, from the key's
%   index when the key is known (and its value's hash when the value is).

v_candidate(M, K, V, X) :-
    atom(K),
    !,
    (   nonvar(V)
    ->  view_hash(V, H)
    ;   true
    ),
    table_entry(M, K, H, X).
v_candidate(M, K, _, X) :-
    var(K),
    rec_(M, X, _).

v_get(K, D, V) :-
    (   atom(K)
    ->  get_dict(K, D, S),
        view_value(S, V)
    ;   var(K)
    ->  get_dict(K, D, S),
        view_value(S, V)
    ).

%   view_value(+Stored, -Value): a stored value as the view shows it.

view_value(S, V) :- number(S), !, V = S.
view_value(S, V) :- string(S), !, V = S.
view_value([S], V) :- !, atom_string(A, S), V = A.
view_value(@(B), @(B)).

%   raw_of(+Value, -Stored) is semidet: the stored form of a view value (fails for
%   terms no record holds, a variable included): the inverse of view_value/2.

raw_of(V, R) :- atom(V), !, atom_string(V, S), R = [S].
raw_of(V, V) :- string(V), !.
raw_of(V, V) :- number(V), !.
raw_of(@(B), @(B)) :- ( B == true ; B == false ), !.

%   view_hash(+Value, -Hash) is semidet: the index hash of the stored values a view
%   value can be (fails for terms no record holds).

view_hash(V, H) :- atom(V), !, atom_string(V, S), index_hash(S, H).
view_hash(V, H) :- string(V), !, index_hash(V, H).
view_hash(V, H) :- number(V), !, index_hash(V, H).
view_hash(@(B), H) :- ( B == true ; B == false ), !, index_hash(@(B), H).


                 /*******************************
                 *     THE RULES' OWN INDEX    *
                 *******************************/

%   table_entry(+M, +K, ?Hash, -Name): a name (an atom) whose record has key K (with a
%   value of index hash Hash, when bound). From key K's index ('$rx'/3 in the store
%   module) when the installed rules read K; otherwise, as for a knowledge-base goal
%   that reads a key no rule does, every record is visited (the index exists only for
%   the keys of installed rules, so a store without rules pays nothing for it).

table_entry(M, K, H, X) :-
    (   M:'$rx_key'(K)
    ->  M:'$rx'(H, K, X)
    ;   M:rec(S, _, D),
        get_dict(K, D, V),
        (   var(H)
        ->  true
        ;   index_hash(V, H0),
            H0 == H
        ),
        atom_string(X, S)
    ).

%   index_build(+M, +K): the index of key K, when the first installed rule reads it:
%   '$rx'(Hash, K, Name) for every record that has K (Hash that of its value), kept
%   by index_move/5 in the transaction of every write from then on.

index_build(M, K) :-
    (   M:'$rx_key'(K)
    ->  true
    ;   forall(( M:rec(S, _, D), get_dict(K, D, V) ),
               ( index_hash(V, H),
                 atom_string(A, S),
                 assertz(M:'$rx'(H, K, A))
               )),
        assertz(M:'$rx_key'(K))
    ).

%   index_drop(+M, +K): forget key K's index (no installed rule reads K any more).

index_drop(M, K) :-
    retractall(M:'$rx_key'(K)),
    retractall(M:'$rx'(_, K, _)).

%   index_move(+M, +K, +Name, +Old, +New): the index after the value of key K of record
%   Name changed from Old to New (stored values, or none: absent), as the rules'
%   compiled comparison of the keys they read finds it (prolog/rules_delta.pl,
%   change/4): called only for a key that is indexed and whose value changed.

index_move(M, K, Name, V0, V1) :-
    (   V0 == none
    ->  true
    ;   index_hash(V0, H0),
        ignore(retract(M:'$rx'(H0, K, Name)))
    ),
    (   V1 == none
    ->  true
    ;   index_hash(V1, H1),
        assertz(M:'$rx'(H1, K, Name))
    ).

%   arith(+Goal): an arithmetic comparison or is/2, false (not an error) when an
%   argument is not a number.

arith(G) :-
    G =.. [_|Args],
    (   G = (_ is _)
    ->  Args = [_, Expr],
        numeric(Expr)
    ;   maplist(numeric, Args)
    ),
    catch(G, error(E, _), arith_error(E)).

%   numeric(+Expr): every leaf of Expr is a number (SWI-Prolog would evaluate a
%   one-character string as its code: "9" > 1 holds there; here it is false).

numeric(X) :- number(X), !.
numeric(X) :- compound(X), !, X =.. [_|Args], maplist(numeric, Args).
numeric(pi).
numeric(e).

arith_error(type_error(_, _)) :- !, fail.
arith_error(evaluation_error(_)) :- !, fail.
arith_error(E) :- throw(error(E, _)).


%   The view is safe for the knowledge base's sandbox (prolog/skb.pl, wall 1): it only
%   reads the store it was made for (its state is fixed in the view's clause, and KB
%   code may not name octopus_rules_view itself: wall 3), and library(sandbox) cannot
%   prove that by itself, as v_record/2 and v_attr/4 read a module given as data.

:- multifile sandbox:safe_primitive/1.

sandbox:safe_primitive(octopus_rules_view:v_record(_, _)).
sandbox:safe_primitive(octopus_rules_view:v_attr(_, _, _, _)).
