:- module(test_match, []).
:- use_module(library(plunit)).
:- use_module(library(pcre)).
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

:- begin_tests(exact_numbers).

% Prolog's =:= converts the integer to a float; the store compares exact values.
big(B) :- B is 2**53 + 1.

test(not_equal_through_float) :- big(B), \+ holds_on(v-B, [-(v, eq, 9007199254740992.0)]).
test(ordered_exactly) :- big(B), holds_on(v-B, [-(v, gt, 9007199254740992.0)]).
test(ne_exactly) :- big(B), holds_on(v-B, [-(v, ne, 9007199254740992.0)]).
test(integral_float_equal) :- holds_on(v-1.0, [-(v, eq, 1)]), holds_on(v-1, [-(v, le, 1.0)]).
test(fraction_between) :-
    B is 2**52 + 1, holds_on(v-B, [-(v, lt, 4503599627370497.5), -(v, gt, 4503599627370496.5)]).
test(huge) :- X is 10**400, holds_on(v-X, [-(v, gt, 1.0e300)]), \+ holds_on(v-X, [-(v, eq, 1.0e300)]).
test(negative) :- X is -(2**63) - 1, holds_on(v-X, [-(v, lt, -9223372036854775808.0)]).
test(zeros) :- holds_on(v-(-0.0), [-(v, eq, 0.0)]), holds_on(v-0, [-(v, eq, -0.0)]).
test(compare_numbers) :-
    big(B), compare_numbers(O1, B, 9007199254740992.0), O1 == (>),
    compare_numbers(O2, 9007199254740992.0, B), O2 == (<),
    compare_numbers(O3, 3, 3.0), O3 == (=),
    compare_numbers(O4, 2.5, 2), O4 == (>),
    compare_numbers(O5, -3, -2.5), O5 == (<).
% values equal under the exact rule hash alike (what index_hash/2 must guarantee)
test(hash_follows_equality) :-
    X is 2**60, index_hash(X, H), F is float(X), index_hash(F, H).

holds_on(K-V, Cs) :- dict_pairs(D, _, [K-V]), prepare_constraints(Cs, P), constraints_hold(P, D).

:- end_tests(exact_numbers).

:- begin_tests(regex).

% what the engine's bounded search answers, against PCRE2's own unanchored search
same(Pattern, Text) :-
    regex_compile(Pattern, Rx),
    ( regex_match(Rx, Text, name) -> Ours = true ; Ours = false ),
    re_compile(Pattern, Re, []),
    ( re_match(Re, Text) -> Plain = true ; Plain = false ),
    Ours == Plain.

test(same_meaning, [forall(member(P-T, ['b'-"ab", '^b'-"ab", '(?m)^b'-"a\nb", '.*b'-"a\nb",
                                      '.*b'-"a\nc", '.+b'-"ab", '\\Gb'-"ab",
                                      '(?<=a)b'-"ab", 'a$'-"a\n", '(*ACCEPT)x'-"",
                                      'x(*FAIL)|b'-"ab", '(*CRLF).*b'-"a\r\nb",
                                      '(*CR).*b'-"a\rb", '\\Kb'-"ab", 'é'-"aé",
                                      '\\X'-"😀", '(a)\\1'-"xaa", '(?|(a)|(b))\\1'-"bb"]))]) :-
    same(P, T).

refused(Pattern, Fragment) :-
    catch(regex_compile(Pattern, _), error(octopus_error(query, Msg), _), true),
    nonvar(Msg),
    once(sub_string(Msg, _, _, _, Fragment)).

test(recursion) :-
    forall(member(P, ['(?R)', '(?0)', '((?1))', '(?-1)', '(?+1)', '(?<a>(?&a))',
                      '(?P<a>(?P>a))', '\\g<1>(a)', '(a)\\g<-1>']),
           refused(P, "recursion and subroutine calls")).
test(not_recursion) :-
    forall(member(P, ['(?-i)a', '(?(R)a|b)', '(a)\\g{-1}', '(a)\\g1', '(?<n>a)\\k<n>',
                      '(?P=n)(?P<n>a)']),
           regex_compile(P, _)).
test(limits_refused) :-
    refused('(*LIMIT_DEPTH=1)a', "own match limits"),
    refused('(*LIMIT_HEAP=1)a', "own match limits"),
    refused('(*limit_match=1)a', "own match limits"),
    refused('(*PRUNE)a', "(*PRUNE) is not supported"),
    refused('a(*THEN:x)b', "(*THEN) is not supported"),
    refused('(*NOTEMPTY_ATSTART)a', "is not supported").
test(backslash_c) :- refused('a\\C', "\\C is disabled").
test(nul) :- atom_codes(P, [0'a, 0, 0'b]), refused(P, "NUL character").
test(start_options_kept) :-
    string_codes(E, [0xe9]),                % é, whatever the source encoding
    regex_compile('(*UTF)(*UCP)^\\w$', Rx), regex_match(Rx, E, name),
    regex_compile('^\\w$', Rx2), \+ regex_match(Rx2, E, name).
test(subject_limit, [throws(error(resource_error(regex_subject_length), regex(_, key(k), 1025, 1024)))]) :-
    regex_compile(a, Rx), length(L, 1025), maplist(=(0'b), L), string_codes(S, L),
    regex_match(Rx, S, key(k)).
test(match_limit, [throws(error(resource_error(match_limit), regex(_, name, 1024, 20000)))]) :-
    regex_compile('\\w*?[^x]', Rx), length(L, 1024), maplist(=(0'x), L), string_codes(S, L),
    regex_match(Rx, S, name).
test(budget, [throws(error(octopus_error(query, _), _))]) :-
    regex_compile(b, Rx),
    setup_call_cleanup(( set_prolog_flag(octopus_regex_cpu_base, 0.0),
                         set_prolog_flag(octopus_regex_cpu_per_text, 0.0) ),
                       with_regex_budget(( between(1, 100, _), regex_match(Rx, "aaa", name), fail
                                         ; true )),
                       ( set_prolog_flag(octopus_regex_cpu_base, 1.0),
                         set_prolog_flag(octopus_regex_cpu_per_text, 0.0001) )).
test(no_budget_outside) :-
    regex_compile(b, Rx),
    setup_call_cleanup(( set_prolog_flag(octopus_regex_cpu_base, 0.0),
                         set_prolog_flag(octopus_regex_cpu_per_text, 0.0) ),
                       forall(between(1, 100, _), \+ regex_match(Rx, "aaa", name)),
                       ( set_prolog_flag(octopus_regex_cpu_base, 1.0),
                         set_prolog_flag(octopus_regex_cpu_per_text, 0.0001) )).
test(trigger_probe) :-
    catch(prepare_trigger_query(@(none), [-(s, re, '(a+)+$')], _), error(octopus_error(query, Msg), _), true),
    once(sub_string(Msg, _, _, _, "too costly")),
    prepare_trigger_query(@(none), [-(s, re, '^(web|db)[0-9]+$')], _).
test(name_limit, [throws(error(octopus_error(query, _), _))]) :-
    length(L, 1025), maplist(=(0'n), L), atom_codes(N, L), check_name(N).

:- end_tests(regex).

:- begin_tests(hash).

test(int_float_alike) :- index_hash(1, H), index_hash(1.0, H).
test(atom_string_alike) :- index_hash("x", H), index_hash(["x"], H).
test(bool_differs) :- index_hash(@(true), H1), index_hash(1, H2), H1 \== H2.

:- end_tests(hash).
