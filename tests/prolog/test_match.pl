:- module(test_match, []).
:- use_module(library(plunit)).
:- use_module('../../prolog/match').

:- begin_tests(values).

test(import_string) :- import_value(abc, V), V == "abc".
test(import_identifier) :- import_value([abc], V), V == ["abc"].
test(import_numbers) :- import_value(5, 5), import_value(2.5, 2.5).
test(import_bool) :- import_value(@(true), V), V == @(true).
test(import_bad, [throws(error(type_error(octopus_value, f(x)), _))]) :- import_value(f(x), _).

:- end_tests(values).

:- begin_tests(constraints).

dict(_{a: 1, f: 1.5, s: "abc", t: ["abc"], b: @(true)}).

holds(Cs) :- dict(D), prepare_constraints(Cs, P), constraints_hold(P, D).

test(eq_numeric) :- holds([-(a, eq, 1.0)]).
test(eq_atom_string) :- holds([-(s, eq, [abc])]), holds([-(t, eq, abc)]).
test(eq_bool) :- holds([-(b, eq, @(true))]).
test(bool_not_int, [fail]) :- holds([-(b, eq, 1)]).
test(missing_key_ne, [fail]) :- holds([-(zz, ne, 1)]).
test(ne_mismatch, [fail]) :- holds([-(a, ne, x)]).
test(ordering) :- holds([-(a, lt, 2), -(a, ge, 1), -(f, gt, 1)]).
test(text_order) :- holds([-(s, lt, abd), -(t, gt, 'ABC')]).
test(number_vs_text, [fail]) :- holds([-(a, lt, z)]).
test(any) :- holds([-(s, any, @(none))]).
test(regex) :- holds([-(s, re, '^a.c$'), -(t, re, 'b')]).
test(regex_number, [fail]) :- holds([-(a, re, '1')]).
test(bad_regex, [throws(error(octopus_error(query, _), _))]) :- holds([-(s, re, '(')]).
test(own_limit, [throws(error(octopus_error(query, _), _))]) :- holds([-(s, re, '(*LIMIT_MATCH=1)a')]).

:- end_tests(constraints).

:- begin_tests(names).

test(exact) :- prepare_query(obj1, [], Q), record_matches(Q, obj1, _{}).
test(any) :- prepare_query(@(none), [], Q), record_matches(Q, whatever, _{}).
test(regex_search) :- prepare_query(re-'obj', [], Q), record_matches(Q, my_obj_1, _{}).

:- end_tests(names).

:- begin_tests(hash).

test(int_float_alike) :- index_hash(1, H), index_hash(1.0, H).
test(atom_string_alike) :- index_hash("x", H), index_hash(["x"], H).
test(bool_differs) :- index_hash(@(true), H1), index_hash(1, H2), H1 \== H2.

:- end_tests(hash).
