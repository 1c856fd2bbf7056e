:- module(test_store, []).
:- use_module(library(plunit)).
:- use_module('../../prolog/store').

:- begin_tests(store, [setup(store_create(tstore, _)), cleanup(store_destroy(tstore, _))]).

test(set_get) :-
    store_set(tstore, x, [a-1, s-abc], [], @(false), 1, R), R == x,
    store_get(tstore, x, [Rev, D]), Rev == 1, D.a == 1, D.s == "abc".
test(index_entries_follow_replace) :-
    store_set(tstore, y, [a-1], [], @(false), 2, _),
    store_set(tstore, y, [b-2], [], @(false), 3, _),
    tstore:key_index(a, TA), \+ call(tstore:TA, _, y),
    tstore:key_index(b, TB), call(tstore:TB, _, y).
test(condition_failed) :-
    store_set(tstore, z, [v-2], [-(v, eq, 1)], @(false), 4, R),
    R == @(false),
    \+ tstore:rec(z, _, _).
test(sequential) :-
    store_set(tstore, s_, [], [], @(true), 5, N0), N0 == s_0,
    store_set(tstore, s_, [], [], @(true), 6, N1), N1 == s_1.
test(delete_removes_index) :-
    store_set(tstore, d, [k-9], [], @(false), 7, _),
    store_delete(tstore, d, [], [7, _]),
    \+ tstore:key_index(k, _),
    store_delete(tstore, d, [], R), R == @(none).
test(query_uses_index) :-
    store_set(tstore, q1, [vendor-32902, dev-1], [], @(false), 8, _),
    store_set(tstore, q2, [vendor-32902, dev-2], [], @(false), 9, _),
    store_names(tstore, @(none), [-(vendor, eq, 32902), -(dev, eq, 2)], Names),
    Names == [q2].
test(load_is_all_or_nothing) :-
    catch(store_load(tstore, [-(l1, [a-1]), -(l2, [a-f(x)])], 10, _), E, true),
    E = error(type_error(octopus_value, f(x)), _),
    \+ tstore:rec(l1, _, _).
test(key_table_goes_with_its_last_record) :-
    store_set(tstore, g1, [gone-1], [], @(false), 20, _),
    store_set(tstore, g2, [gone-2], [], @(false), 21, _),
    tstore:key_index(gone, T),
    store_delete(tstore, g1, [], _),
    tstore:key_index(gone, T),
    store_set(tstore, g2, [other-1], [], @(false), 22, _),
    \+ tstore:key_index(gone, _),
    \+ current_predicate(tstore:T/2).
test(identifier_values) :-
    store_set(tstore, i1, [t-[eth]], [], @(false), 23, _),
    store_names(tstore, @(none), [-(t, eq, eth)], N), N == [i1],
    store_get(tstore, i1, [_, D]), D.t == ["eth"].

:- end_tests(store).
