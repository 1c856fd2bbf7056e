:- module(octopus_rules_delta,
          [ rules_change/8,           % +Store, +Name, +Old, +New, +Rev, +Forced, +Rows0, -Rows
            rebuild_dispatch/1,       % +Rules
            forget/2,                 % +Rules, +Id
            limited/3,                % :Goal, +Inferences, -Outcome
            export_row/2,             % +Row, -Values
            row_text/3                % +Row, +Names, -Text
          ]).

/** <module> Rules over live records: keeping relations current (the delta rule)

A change of one record N turns the store D into D'. Every row that appears or
disappears has a derivation, in D or in D', that reads N through one of its literals L
(positive, or inside a negation that turned): otherwise its truth could not have
changed. So the candidates are the heads found by *generators* (prolog/rules_compile.pl),
each the variant's body evaluated with L's record bound to N, first, in D and in D':
for a positive L the whole body, for L inside a negated conjunction the positive
literals and that conjunction made positive. Each candidate is then checked in D and in
D' (a point query with the head bound), unless what found it already tells: rows true
only in D' appear, rows true only in D disappear.

Dispatch. A generator runs only if its literal could have changed: attr(N, K, _) when
N's K changed, record(N) when N came or went. rebuild_dispatch/1 keeps, whenever a
watch or invariant comes or goes, one clause comparing the keys the generators read
(change/4, compiled for those keys) whose answer is the sources a change concerns,
each with the watches to evaluate, what each needs and may spend; per source (a key,
existence, any key) one clause running the generators of every watch of it
(cand_key/5, cand_exists/4, cand_any/4: their bodies in one disjunction, their heads
bound when compiling, the goals that branches begin with alike run once: factored/3);
and per watch and source the same for that watch alone (found/7, for the evaluation
watch by watch after a batch failed). A change compares
the values of those keys only (once: the rules' index is kept by the same
comparison, for the keys it has: prolog/rules_compile.pl), so a write that no rule
reads costs two dict lookups per watched key and never evaluates anything; a change
that some watches read finds the candidates of all of them with one findall/3 and
one sort (evaluate_batch/10). When every generator of a key starts by testing values
of the changed record itself (hot(D, T) :- attr(D, temp, T), T > 90), those tests
are compiled into a guard (guard_clause/6) that runs first: a change of the key that
passes none of them (most temperatures) starts no evaluation at all.

D is D' with N as it was: the evaluation runs inside the store's transaction, after
the write, and reads through the overlay of prolog/rules_view.pl. An invariant whose
violation relation gains a row throws, so the transaction - and the write - is undone.

Evaluation is bounded by inferences (call_with_inference_limit/3): the watches a change
concerns are evaluated under one limit, the sum of theirs; only if that is exceeded (or
something raises) are they evaluated again one by one, each under its own, to find
which one to remove or refuse. A watch over its limit on a change is removed (the
write goes on: Python delivers its REMOVED event); an invariant over its limit rejects
the write (it cannot be checked, so it is not given up silently).
*/

:- use_module(library(apply)).
:- use_module(library(lists)).
:- use_module(library(ordsets)).
:- use_module(library(pairs)).
:- use_module(errors).
:- use_module(rules_view, [index_drop/2]).
:- use_module(rules_compile, [direct_index/2]).

:- meta_predicate limited(0, +, -).


                 /*******************************
                 *           DISPATCH          *
                 *******************************/

%!  rules_change(+Store, +Name, +Old, +New, +Rev, +Forced, +Rows0, -Rows) is det.
%
%   Called by the store inside the transaction of a write, after it: record Name
%   went from Old to New (dicts, or none), at revision Rev. Rows is Rows0 preceded
%   (newest first: the store reverses the list once) by [Rev, Id, Kind, Row] for
%   every row of a watch that appears (Kind set) or disappears (del), and [Rev, Id,
%   removed, Reason] for a watch that exceeded its limit on this change (it is
%   removed). An invariant that gains a row throws octopus_violation(Name, RowText),
%   unless Forced is @(true) (a session's end, which cannot be refused): then [Rev,
%   Id, violated, RowText] is added.

rules_change(M, Name, Old, New, Rev, Forced, Rows0, Rows) :-
    (   M:'$rules'(R),
        Old \== New
    ->  R:change(Name, Old, New, Sources),
        (   Sources == []
        ->  Rows = Rows0
        ;   evaluate_all(R, Sources, Name, Old, New, Rev, Forced, Rows0, Rows)
        )
    ;   Rows = Rows0
    ).

%!  rebuild_dispatch(+R) is det.
%
%   The dispatch of R (see the module's comment) from its generators: the clause
%   R:change/4 and, per source (a key, existence, any key), the clause that runs the
%   generators of every watch of that source (cand_key/5, cand_exists/4, cand_any/4),
%   a key's guard when it has one (guard_key/4, guard_clause/6), and per watch and
%   source the clause of found/7 (run only when a batch must be
%   evaluated again watch by watch: evaluate_all/9).

rebuild_dispatch(R) :-
    retractall(R:change(_, _, _, _)),
    retractall(R:cand_key(_, _, _, _, _)),
    retractall(R:guard_key(_, _, _, _)),
    retractall(R:cand_exists(_, _, _, _)),
    retractall(R:cand_any(_, _, _, _)),
    retractall(R:found(_, _, _, _, _, _, _)),
    R:store(M),
    findall(K, R:watched_key(K), Ks0),
    findall(K, M:'$rx_key'(K), Ix0),
    append(Ks0, Ix0, All0),
    sort(All0, All),
    sort(Ix0, Indexed),
    maplist(key_source(R), All, KeySources),
    findall(Id-G, R:gen_exists(Id, G), Exists),
    source(R, exists, Exists, ExistsSource),
    findall(Id-G, R:gen_anykey(Id, G), Any),
    source(R, any, Any, AnySource),
    change_clause(M, All, Indexed, KeySources, ExistsSource, AnySource, Clause),
    assertz(R:Clause).

key_source(R, K, Source) :-
    findall(Id-G, R:gen_key(K, Id, G), Pairs),
    source(R, key(K), Pairs, Source).

%   source(+R, +Source, +Pairs, -Entry): Entry is s(Source, Groups, Budget, Guard)
%   for the generators Pairs (Id-G) of Source, or none if there are none: Groups as
%   group_gens/5 makes them, Budget the sum of the limits of their watches. The
%   clause running them all (cand_key/5, cand_exists/4 or cand_any/4) is asserted;
%   Guard is guard when a key's generators all start by testing values of the changed
%   record (guard_clause/6: R:guard_key/4 is asserted), else none.

source(_, _, [], none) :- !.
source(R, Source, Pairs, s(Source, Groups, Budget, Guard)) :-
    group_gens(R, Source, Pairs, Groups, Branches),
    budget(Groups, 0, Budget),
    maplist(branch_goal(Name, Old, New, X), Branches, Goals),
    (   Source = key(K),
        guard_clause(Goals, K, Name, Old, New, GuardClause)
    ->  assertz(R:GuardClause),
        Guard = guard
    ;   Guard = none
    ),
    cand_head(Source, Name, Old, New, X, Head),
    factored(Goals, [Name, Old, New, X], Body0),
    direct_index(Body0, Body),
    assertz(R:(Head :- Body)).

%   factored(+Goals, +Shared, -Body): the disjunction of Goals (conjunctions), with
%   the goals that branches start alike taken out once: (P, A ; P, B ; C) becomes
%   (P, (A ; B) ; C). The generators of one source mostly begin the same way (the
%   changed record's value of the key, the record it names, the index entries of
%   that value), and a change runs every branch, so each of those steps runs once
%   instead of once per watch. It keeps the rows found: (P, A ; P, B) and
%   (P, (A ; B)) have the same solutions, only their order differs, and the
%   candidates are sorted (evaluate_batch/10); nothing in a generator has side
%   effects or cuts out of its branch. Two goals are alike when they are variants
%   that map the Shared variables (the clause's arguments) to themselves; the
%   other branch's own variables are then bound to the first one's. Goals is bound
%   by this (its branches' own variables), so it is called last.

factored(Goals, Shared, Body) :-
    maplist(conj_list, Goals, Lists),
    factor_lists(Lists, Shared, Body).

factor_lists(Lists, Shared, Body) :-
    first_groups(Lists, Shared, Groups),
    maplist(group_goal(Shared), Groups, Alternatives),
    disjunction(Alternatives, Body).

group_goal(_, end, true) :- !.
group_goal(Shared, First-Rests, Goal) :-
    factor_lists(Rests, Shared, Rest),
    conj_goals([First, Rest], Goal).

%   first_groups(+Lists, +Shared, -Groups): Lists grouped by their first goal, in the
%   order of first appearance: First-Rests, or end (once) for lists with no goal
%   left.

first_groups([], _, []).
first_groups([[]|Ls], Shared, [end|Groups]) :-
    exclude(==([]), Ls, Ls1),           % the same branch twice: the same rows
    first_groups(Ls1, Shared, Groups).
first_groups([[G|Gs]|Ls], Shared, [G-[Gs|Rests]|Groups]) :-
    same_first(Ls, G, Shared, Rests, Others),
    first_groups(Others, Shared, Groups).

same_first([], _, _, [], []).
same_first([L|Ls], G, Shared, Rests, Others) :-
    (   L = [G1|Gs1],
        alike(G, G1, Shared)
    ->  Rests = [Gs1|Rests1],
        Others = Others1
    ;   Rests = Rests1,
        Others = [L|Others1]
    ),
    same_first(Ls, G, Shared, Rests1, Others1).

%   alike(+G, +G1, +Shared): G1 is a variant of G whose variables are G's where they
%   are Shared, and G1's own otherwise; those are bound to G's (G1 becomes G).

alike(G, G1, Shared) :-
    G =@= G1,
    term_variables(G, Vs),
    term_variables(G1, Vs1),
    maplist(same_var(Shared, Vs, Vs1), Vs, Vs1),
    Vs = Vs1.

%   (A variable of one goal that the other has elsewhere would, once bound, make
%   two of G's variables one.)

same_var(Shared, Vs, Vs1, V, V1) :-
    (   V == V1
    ->  true
    ;   \+ memberchk_eq(V, Shared),
        \+ memberchk_eq(V1, Shared),
        \+ memberchk_eq(V1, Vs),
        \+ memberchk_eq(V, Vs1)
    ).

%   guard_clause(+Goals, +K, +Name, +Old, +New, -Clause): the clause of
%   guard_key(K, Name, Old, New), true if some branch of Goals gets past its first
%   goals that read only the changed record's dicts Old and New (safe_prefix/4);
%   fails to be made unless every branch has such a prefix that filters (tests a
%   value: a comparison or number/1), as then it is worth running first. A change of
%   K for which it is false has no candidates: the evaluation is not started (no
%   findall/3, no inference limit). The prefixes cannot raise, loop or bind anything
%   outside them (they test the two dicts and values read from them), so running
%   them outside the limit is safe.

guard_clause(Goals, K, Name, Old, New, (guard_key(K, Name, Old, New) :- Body)) :-
    maplist(guard_prefix(Old, New), Goals, Prefixes0),
    copy_term(Name-Old-New-Prefixes0, Name-Old-New-Prefixes),    % (Goals stay as they are)
    factored(Prefixes, [Name, Old, New], Body).

guard_prefix(Old, New, Goal, Prefix) :-
    conj_list(Goal, Gs),
    safe_run(Gs, Old-New, [], [], 0, 0, Last),
    Last > 0,
    length(Ps, Last),
    append(Ps, _, Gs),
    list_conj(Ps, Prefix).

conj_list(G, Gs) :- conj_list(G, Gs, []).

conj_list(G, L0, L) :-
    (   nonvar(G), G = (A, B)
    ->  conj_list(A, L0, L1),
        conj_list(B, L1, L)
    ;   L0 = [G|L]
    ).

list_conj([G], G) :- !.
list_conj([G|Gs], (G, C)) :- list_conj(Gs, C).

%   safe_run(+Goals, +Old-New, +Checked, +Numbers, +I, +Last0, -Last): Last is the
%   length of the longest prefix of Goals of safe tests (safe_goal/7) that ends with
%   a filtering one (0: none). Checked are the dicts known not to be none, Numbers the
%   variables known to be numbers.

safe_run([G|Gs], ON, C0, N0, I0, Last0, Last) :-
    nonvar(G),
    safe_goal(G, ON, C0, C, N0, N, Filters),
    !,
    I is I0 + 1,
    (   Filters == true -> Last1 = I ; Last1 = Last0 ),
    safe_run(Gs, ON, C, N, I, Last1, Last).
safe_run(_, _, _, _, _, Last, Last).

safe_goal(true, _, C, C, N, N, false).
safe_goal(_ = _, _, C, C, N, N, false).
safe_goal(_ == _, _, C, C, N, N, true).
safe_goal(G, Old-New, C, [D|C], N, N, false) :-     % (matched without binding G)
    G = (D \== X),
    X == none,
    ( D == Old ; D == New ),
    !.
safe_goal(_ \== _, _, C, C, N, N, true).
safe_goal(get_dict(K, D, _), _, C, C, N, N, false) :- atom(K), memberchk_eq(D, C).
safe_goal(octopus_rules_view:view_value(_, _), _, C, C, N, N, false).
safe_goal(G, _, C, C, N, N, false) :-                 % view_code/3's
    G = (Test -> atom_string(_, S) ; _ = _),
    nonvar(Test), Test = (_ = [S0]), S0 == S.
safe_goal(number(V), _, C, C, N, [V|N], true) :- var(V).
safe_goal(G, _, C, C, N, N, true) :-
    compound(G),
    G =.. [Op, A, B],
    (   memberchk(Op, [<, >, =<, >=, =:=, =\=])
    ->  numeric_arg(A, N),
        numeric_arg(B, N)
    ;   memberchk(Op, [@<, @>, @=<, @>=])
    ).

numeric_arg(A, _) :- number(A), !.
numeric_arg(A, N) :- var(A), memberchk_eq(A, N).

memberchk_eq(X, [Y|Ys]) :- ( X == Y -> true ; memberchk_eq(X, Ys) ).

branch_goal(Name, Old, New, X, b(Name, Old, New, X, Goal), Goal).

cand_head(key(K), Name, Old, New, X, cand_key(K, Name, Old, New, X)).
cand_head(exists, Name, Old, New, X, cand_exists(Name, Old, New, X)).
cand_head(any, Name, Old, New, X, cand_any(Name, Old, New, X)).

%   change_clause(+M, +Keys, +Indexed, +KeySources, +Exists, +Any, -Clause): the clause
%   of R:change(+Name, +Old, +New, -Sources), Sources being the entries (source/4) of
%   the keys among Keys whose value differs between the dicts (or none) Old and New,
%   of existence when Old or New is none, and of any key; the rules' index of the
%   keys Indexed kept by the same comparison. Compiled for the keys (one get_dict/3
%   per key and state, the tests inline), as it runs on every write.

change_clause(M, Keys, Indexed, KeySources, Exists, Any,
              (change(Name, Old, New, Sources) :- Body)) :-
    Prelude = ( ( Old == none -> O = _{}, E = true ; O = Old ),
                ( New == none -> N = _{}, E = true ; N = New ) ),
    key_tests(Keys, KeySources, Indexed, M, Name, O, N, Sources, Rest, Tests),
    (   Exists == none
    ->  Rest = Rest1,
        ExistsTest = true
    ;   ExistsTest = ( E == true -> Rest = [Exists|Rest1] ; Rest = Rest1 )
    ),
    (   Any == none -> Rest1 = [] ; Rest1 = [Any] ),
    Body = ( Prelude, Tests, ExistsTest ).

key_tests([], [], _, _, _, _, _, S, S, true).
key_tests([K|Ks], [Src|Srcs], Indexed, M, Name, O, N, S0, S, (Test, Tests)) :-
    (   Src == none
    ->  Add = ( S0 = S1 )
    ;   Add = ( S0 = [Src|S1] )
    ),
    (   ord_memberchk(K, Indexed)
    ->  Changed = ( Add, octopus_rules_view:index_move(M, K, Name, V0, V1) )
    ;   Changed = Add
    ),
    Test = ( ( get_dict(K, O, V0) -> true ; V0 = none ),
             ( get_dict(K, N, V1) -> true ; V1 = none ),
             ( V0 == V1 -> S0 = S1 ; Changed ) ),
    key_tests(Ks, Srcs, Indexed, M, Name, O, N, S1, S, Tests).

%   group_gens(+R, +Source, +Pairs, -Groups, -Branches): Id-g(Need, Limit, [Source])
%   per watch Id with generators Pairs (Id-G) of Source (key(K), any or exists),
%   ordered by Id: what a change needs of it (need/2) and its inference limit are in
%   the table, so that evaluating a change looks nothing else up for the watches it
%   concerns; the clause R:found(Source, Id, ...) of found_clause/7 is asserted, and
%   Branches are the branches of the clause running every watch of Source.

group_gens(R, Source, Pairs, Groups, Branches) :-
    sort(Pairs, Sorted),
    group_pairs_by_key(Sorted, Groups0),
    maplist(group_entry(R, Source), Groups0, Groups, Branches0),
    append(Branches0, Branches).

group_entry(R, Source, Id-Gs, Id-g(Need, Limit, [Source]), Branches) :-
    R:watch(Id, Kind, _),
    R:limit(Id, Limit),
    need(Kind, Need),
    found_clause(R, Source, Id, Need, Gs, Clause, Branches),
    assertz(R:Clause).

%   found_clause(+R, +Source, +Id, +Need, +Gens, -Clause, -Branches): the clause of
%   found(Source, Id, Name, Old, New, Head, Known): the candidates of watch Id's
%   generators Gens (those of Source) with what finding each tells (known/3): one
%   disjunction of the generators' bodies (gen0/6 before the change, gen1/6 after
%   it, each with its head unified in its branch), so that a change calls one clause
%   per watch and source instead of each generator in turn. Need appear (an
%   invariant) keeps only what a row that appears needs (see delta/9). Branches are
%   the same bodies as b(Name, Old, New, Id-Head-Known, Goal), their heads bound
%   when compiling, for the clause of all watches of Source (source/4).

found_clause(R, Source, Id, Need, Gs, (Head :- Body), Branches) :-
    Head = found(Source, Id, Name, Old, New, H, Known),
    findall(b(State, N0, D0, H0, K0, B),
            ( member(G, Gs),
              (   State = 0, clause(R:gen0(Id, G, N0, D0, H0, Kind), B)
              ;   State = 1, clause(R:gen1(Id, G, N0, D0, H0, Kind), B)
              ),
              gen_known(Need, State, Kind, K0)
            ),
            Branches0),
    maplist(branch(Name, Old, New, H, Known), Branches0, Goals),
    disjunction(Goals, Body0),
    direct_index(Body0, Body),
    maplist(cand_branch(Id), Branches0, Branches).

gen_known(both, State, Kind, Known) :- known(Kind, State, Known).
gen_known(appear, 1, pos, t1).
gen_known(appear, 0, negx, f0).
gen_known(appear, 0, neg, none).

branch(Name, Old, New, H, Known, b(State, N0, D0, H0, K0, B),
       (Name = N0, D = D0, H = H0, Known = K0, B)) :-
    (   State == 0 -> D = Old ; D = New ).

%   cand_branch(+Id, +Branch, -b(Name, Old, New, X, Goal)): Branch with its head
%   bound now (Name, Old, New shared by every branch of the clause; a record name
%   known when compiling is tested), Goal ending with X = Id-Head-Known.

cand_branch(Id, b(State, N0, D0, H0, K0, B0), b(Name, Old, New, X, Goal)) :-
    copy_term(b(N0, D0, H0, K0, B0), b(N, D, H, K, B)),
    (   var(N) -> N = Name, Test = true ; Test = (Name == N) ),
    (   State == 0 -> D = Old ; D = New ),
    conj_goals([Test, B, X = Id-H-K], Goal).

conj_goals([G], G) :- !.
conj_goals([true|Gs], G) :- !, conj_goals(Gs, G).
conj_goals([G, true], G) :- !.
conj_goals([G0|Gs], (G0, G)) :- conj_goals(Gs, G).

disjunction([], fail).
disjunction([G], G) :- !.
disjunction([G|Gs], (G ; Rest)) :- disjunction(Gs, Rest).

                 /*******************************
                 *          EVALUATION         *
                 *******************************/

evaluate_all(R, Sources, Name, Old, New, Rev, Forced, Rows0, Rows) :-
    (   Sources = [s(Source, Groups, Budget, Guard)]
    ->  (   Guard == guard,
            Source = key(K),
            \+ R:guard_key(K, Name, Old, New)
        ->  Skip = true               % no generator gets past its tests of the record
        ;   true
        )
    ;   source_groups(Sources, Lists),
        merge_groups(Lists, Groups),
        budget(Groups, 0, Budget)
    ),
    (   Skip == true
    ->  Rows = Rows0
    ;   evaluate_limited(R, Sources, Groups, Budget, Name, Old, New, Rev, Forced, Rows0,
                         Rows)
    ).

evaluate_limited(R, Sources, Groups, Budget, Name, Old, New, Rev, Forced, Rows0, Rows) :-
    catch(call_with_inference_limit(
              evaluate_batch(Sources, Groups, R, Name, Old, New, Rev, Forced, Rows0,
                             Rows1),
              Budget, Result),
          E, true),
    (   var(E), Result \== inference_limit_exceeded
    ->  Rows = Rows1
    ;   nonvar(E), E = octopus_violation(_, _)
    ->  throw(E)
    ;   foldl(evaluate(R, Name, Old, New, Rev, Forced), Groups, Rows0, Rows)
    ).

source_groups([], []).
source_groups([s(_, Groups, _, _)|Ss], [Groups|Gs]) :- source_groups(Ss, Gs).

%   merge_groups(+Lists, -Groups): the groups of several sources as one list ordered
%   by Id, a watch in several of them once, with all its sources.

merge_groups(Lists, Groups) :-
    append(Lists, All),
    keysort(All, Sorted),
    join_groups(Sorted, Groups).

join_groups([], []).
join_groups([Id-Gs0|T0], [Id-Gs|T]) :-
    same_id(T0, Id, Gs0, Gs, T1),
    join_groups(T1, T).

same_id([Id1-g(_, _, Gs1)|T0], Id, g(Need, Limit, Gs0), Gs, T) :-
    Id1 == Id,
    !,
    append(Gs0, Gs1, Gs2),
    same_id(T0, Id, g(Need, Limit, Gs2), Gs, T).
same_id(T, _, g(Need, Limit, Gs0), g(Need, Limit, Gs), T) :-
    sort(Gs0, Gs).

budget([], B, B).
budget([_-g(_, I, _)|Gs], B0, B) :-
    B1 is B0 + I,
    budget(Gs, B1, B).

%   evaluate_batch(+Sources, +Groups, +R, +Name, +Old, +New, +Rev, +Forced, +Rows0,
%   -Rows): the rows of every watch Id-g(Need, Limit, Sources) of Groups (no limit of
%   its own: evaluate_all/9 has one), as delta/9 and outcome/9 would find them watch
%   by watch, but with the candidates of all of them found at once (one clause per
%   source, one findall/3 and one sort per change, not per watch: most changes find
%   few candidates, or none).

evaluate_batch(Sources, Groups, R, Name, Old, New, Rev, Forced, Rows0, Rows) :-
    (   Sources = [s(key(K), _, _, _)]     % the usual change: one key the rules read
    ->  findall(X, R:cand_key(K, Name, Old, New, X), Found)
    ;   findall(X, candidate(Sources, R, Name, Old, New, X), Found)
    ),
    (   Found == []
    ->  Rows = Rows0
    ;   msort(Found, Sorted),
        group_pairs_by_key(Sorted, Candidates),
        outcomes(Candidates, Groups, R, Name, Old, Rev, Forced, Rows0, Rows)
    ).

candidate([s(Source, _, _, _)|Ss], R, Name, Old, New, X) :-
    (   candidate_of(Source, R, Name, Old, New, X)
    ;   candidate(Ss, R, Name, Old, New, X)
    ).

candidate_of(key(K), R, Name, Old, New, X) :- R:cand_key(K, Name, Old, New, X).
candidate_of(exists, R, Name, Old, New, X) :- R:cand_exists(Name, Old, New, X).
candidate_of(any, R, Name, Old, New, X) :- R:cand_any(Name, Old, New, X).

%   outcomes(+Candidates, +Groups, ...): Candidates, (Id-Head)-Knowns ordered by Id,
%   taken watch by watch.

outcomes([], _, _, _, _, _, _, Rows, Rows).
outcomes([(Id-H)-Known|Cs0], Groups, R, Name, Old, Rev, Forced, Rows0, Rows) :-
    same_watch(Cs0, Id, Hs, Cs),
    memberchk(Id-g(Need, _, _), Groups),
    R:watch(Id, Kind, Names),
    partition_rows([H-Known|Hs], R, Id, Name, Old, Need, Appear, Disappear),
    outcome(Kind, Names, Id, Rev, Forced, Appear, Disappear, Rows0, Rows1),
    outcomes(Cs, Groups, R, Name, Old, Rev, Forced, Rows1, Rows).

same_watch([(Id1-H)-Known|Cs0], Id, [H-Known|Hs], Cs) :-
    Id1 == Id,
    !,
    same_watch(Cs0, Id, Hs, Cs).
same_watch(Cs, _, [], Cs).

need(invariant(_), appear) :- !.
need(watch, both).

%   evaluate(..., +Id-g(Need, Limit, Sources), +Rows0, -Rows): the same, under Id's own
%   limit; a watch over it is removed, an invariant refuses the change.

evaluate(R, Name, Old, New, Rev, Forced, Id-g(_, _, Sources), Rows0, Rows) :-
    (   R:watch(Id, Kind, Names),
        R:limit(Id, Inferences)
    ->  need(Kind, Need),
        limited(delta(R, Id, Sources, Name, Old, New, Need, Appear, Disappear), Inferences,
                Outcome),
        (   Outcome \== done
        ->  failed(R, Id, Kind, Outcome, Inferences, Rev, Forced, Rows0, Rows)
        ;   outcome(Kind, Names, Id, Rev, Forced, Appear, Disappear, Rows0, Rows)
        )
    ;   Rows = Rows0
    ).

outcome(invariant(InvName), Names, Id, Rev, Forced, Appear, _, Rows0, Rows) :- !,
    (   Appear = [Row|_]
    ->  row_text(Row, Names, Text),
        (   Forced == @(true)
        ->  Rows = [[Rev, Id, violated, Text]|Rows0]
        ;   throw(octopus_violation(InvName, Text))
        )
    ;   Rows = Rows0
    ).
outcome(watch, _, Id, Rev, _, Appear, Disappear, Rows0, Rows) :-
    rows_out(Disappear, Rev, Id, del, Rows0, Rows1),
    rows_out(Appear, Rev, Id, set, Rows1, Rows).

%   failed(+R, +Id, +Kind, +Outcome, +Inferences, +Rev, +Forced, +Rows0, -Rows)
%
%   A watch or invariant whose evaluation on a change exceeded its limit or raised:
%   a watch is removed (the change goes on); an invariant refuses the change (it is
%   never given up silently), unless the change is forced.

failed(R, Id, Kind, Outcome, Inferences, Rev, Forced, Rows0, Rows) :-
    failure_text(Outcome, Inferences, Reason),
    (   Kind == watch
    ->  forget(R, Id),
        Rows = [[Rev, Id, removed, Reason]|Rows0]
    ;   Forced == @(true)
    ->  Rows = [[Rev, Id, violated, Reason]|Rows0]
    ;   Kind = invariant(Name),
        throw(octopus_unchecked(Name, Reason))
    ).

failure_text(exceeded, Inferences, Text) :- !,
    format(string(Text), "its rules needed more than ~D inferences on one change",
           [Inferences]).
failure_text(error(E), _, Text) :-
    describe_error(E, [_, Message]),
    format(string(Text), "its rules raised an error: ~s", [Message]).

rows_out([], _, _, _, Rows, Rows).
rows_out([Row|Hs], Rev, Id, Kind, Rows0, Rows) :-
    export_row(Row, Values),
    rows_out(Hs, Rev, Id, Kind, [[Rev, Id, Kind, Values]|Rows0], Rows).

%   delta(+R, +Id, +Sources, +Name, +Old, +New, +Need, -Appear, -Disappear)
%
%   The candidates of watch Id's generators of Sources (found/7 of found_clause/7)
%   after the change (gen1: record Name is New) and before it (gen0: Name is Old),
%   each checked where what found it does not tell
%   (known/3). So a row found by positive generators in both states (the usual
%   update that changes nothing) costs no check at all. Need is both, or appear (an
%   invariant): a row that appears has a derivation after the change through Name, or
%   a negation that held before it through Name and no longer does, so the positive
%   generators run after the change and the negative ones before it only; a row
%   false after the change is not checked before it.

delta(R, Id, Sources, Name, Old, New, Need, Appear, Disappear) :-
    findall(H-Known,
            ( member(Source, Sources),
              R:found(Source, Id, Name, Old, New, H, Known)
            ),
            Found),
    (   Found == []
    ->  Appear = [],
        Disappear = []
    ;   msort(Found, Sorted),
        group_pairs_by_key(Sorted, Candidates),
        partition_rows(Candidates, R, Id, Name, Old, Need, Appear, Disappear)
    ).

%   known(+Kind, +State, -Known): what finding a row in State tells: t0/t1 true
%   there, f0/f1 false there, none nothing.

known(pos, 0, t0).
known(pos, 1, t1).
known(negx, 0, f0).
known(negx, 1, f1).
known(neg, _, none).

partition_rows([], _, _, _, _, _, [], []).
partition_rows([H-Known|Hs], R, Id, Name, Old, Need, Appear, Disappear) :-
    known_states(Known, u, K1, u, K0),
    (   K1 \== u -> In1 = K1
    ;   \+ \+ R:check1(Id, H) -> In1 = true
    ;   In1 = false
    ),
    (   In1 == false, Need == appear
    ->  In0 = unknown                       % cannot appear: no need to know
    ;   K0 \== u -> In0 = K0
    ;   \+ \+ R:check0(Id, Name, Old, H) -> In0 = true
    ;   In0 = false
    ),
    (   In1 == true, In0 == false
    ->  Appear = [H|Appear1], Disappear = Disappear1
    ;   In0 == true, In1 == false
    ->  Appear = Appear1, Disappear = [H|Disappear1]
    ;   Appear = Appear1, Disappear = Disappear1
    ),
    partition_rows(Hs, R, Id, Name, Old, Need, Appear1, Disappear1).

%   known_states(+Known, +K10, -K1, +K00, -K0): what Known (known/3's) tells of the
%   row after the change (K1) and before it (K0): true, false, or u (unknown: checked).

known_states([], K1, K1, K0, K0).
known_states([T|Ts], K10, K1, K00, K0) :-
    known_state(T, K10, K11, K00, K01),
    known_states(Ts, K11, K1, K01, K0).

known_state(t1, _, true, K0, K0).              % (found true wins, as it did)
known_state(f1, K1, K1f, K0, K0) :- ( K1 == u -> K1f = false ; K1f = K1 ).
known_state(t0, K1, K1, _, true).
known_state(f0, K1, K1, K0, K0f) :- ( K0 == u -> K0f = false ; K0f = K0 ).
known_state(none, K1, K1, K0, K0).

%   limited(:Goal, +Inferences, -Outcome): Goal once; Outcome is done, exceeded
%   when it took more than Inferences (or ran out of stack), or error(E) when it
%   raised E.

limited(Goal, Inferences, Outcome) :-
    catch(call_with_inference_limit(Goal, Inferences, Result), E, true),
    (   var(E)
    ->  (   Result == inference_limit_exceeded
        ->  Outcome = exceeded
        ;   Outcome = done
        )
    ;   E = error(resource_error(_), _)
    ->  Outcome = exceeded
    ;   Outcome = error(E)
    ).

%!  forget(+R, +Id) is det.
%
%   Uninstall watch or invariant Id: its clauses, the index of keys no other watch
%   needs, its place in the dispatch tables.

forget(R, Id) :-
    retractall(R:watch(Id, _, _)),
    retractall(R:limit(Id, _)),
    retractall(R:gen0(Id, _, _, _, _, _)),
    retractall(R:gen1(Id, _, _, _, _, _)),
    retractall(R:check0(Id, _, _, _)),
    retractall(R:check1(Id, _)),
    retractall(R:scan(Id, _)),
    retractall(R:gen_key(_, Id, _)),
    forall(( R:watched_key(K), \+ R:gen_key(K, _, _) ),
           retract(R:watched_key(K))),
    retractall(R:index_key(_, Id)),
    R:store(M),
    forall(( M:'$rx_key'(K), \+ R:index_key(K, _) ),
           index_drop(M, K)),
    retractall(R:gen_anykey(Id, _)),
    retractall(R:gen_exists(Id, _)),
    rebuild_dispatch(R).


                 /*******************************
                 *      ROWS ON THE WAY OUT    *
                 *******************************/

%   export_row(+Row, -Values): row(V1, ..., Vn) as a list of plain data janus converts
%   without tuples: an atom (an identifier) as [Text], strings and numbers as they
%   are, @(true)/@(false), a list as _{list: Values}, any other term as
%   _{text: QuotedText}.

export_row(Row, Values) :-
    Row =.. [_|Args],
    maplist(export_value, Args, Values).

export_value(V, [S]) :- atom(V), !, atom_string(V, S).
export_value(V, V) :- number(V), !.
export_value(V, V) :- string(V), !.
export_value(@(B), @(B)) :- ( B == true ; B == false ), !.
export_value(V, _{list: E}) :- is_list(V), !, maplist(export_value, V, E).
export_value(V, _{text: T}) :- format(string(T), "~q", [V]).

%   row_text(+Row, +Names, -Text): "Dev = 'hw.pci.device.3', N = 2".

row_text(Row, Names, Text) :-
    Row =.. [_|Args],
    maplist([N, A, S]>>format(string(S), "~w = ~q", [N, A]), Names, Args, Parts),
    atomic_list_concat(Parts, ', ', Text0),
    atom_string(Text0, Text).
