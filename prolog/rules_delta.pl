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
watch or invariant comes or goes, a clause comparing the keys the generators read
(changed_keys/3, compiled for those keys) and, for each key and for existence, the
watches to evaluate with what each needs and may spend (on_key/2, on_any/1,
on_exists/1), and one clause per watch and source running that watch's generators of
it (found/7: their bodies in one disjunction). A change compares the values of those
keys only (once: the rules' index is kept from the same comparison, for the keys it
has: prolog/rules_compile.pl), so a write that no rule reads costs two dict lookups per
watched key and never evaluates anything; a change that some watches read finds the
candidates of all of them with one findall/3 and one sort (evaluate_batch/9).

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
:- use_module(library(pairs)).
:- use_module(errors).
:- use_module(rules_view, [index_update/3, index_drop/2]).

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
    ->  R:changed_keys(Old, New, Changed),
        (   Changed == []
        ->  true
        ;   index_update(Changed, M, Name)
        ),
        affected(R, Changed, Old, New, Groups),
        (   Groups == []
        ->  Rows = Rows0
        ;   evaluate_all(R, Name, Old, New, Rev, Forced, Groups, Rows0, Rows)
        )
    ;   Rows = Rows0
    ).

%   changed_keys(+Keys, -Clause): the clause of R:changed_keys(+Old, +New, -Changed),
%   Changed being Key-V0-V1 for each of Keys whose value differs between the dicts
%   (or none) Old and New (none: absent). Compiled for the keys (one get_dict/3 per
%   key and state, the tests inline), as it runs on every write.

changed_keys(Keys, (changed_keys(Old, New, Changed) :- Body)) :-
    key_tests(Keys, Old, New, Changed, Body).

key_tests([], _, _, [], true).
key_tests([K|Ks], Old, New, C0, (Test, Body)) :-
    Test = ( ( Old == none -> V0 = none ; get_dict(K, Old, V0) -> true ; V0 = none ),
             ( New == none -> V1 = none ; get_dict(K, New, V1) -> true ; V1 = none ),
             ( V0 == V1 -> C0 = C1 ; C0 = [K-V0-V1|C1] ) ),
    key_tests(Ks, Old, New, C1, Body).

%   affected(+R, +Changed, +Old, +New, -Groups): Id-Generators of every watch with a
%   generator the change concerns, ordered by Id.

affected(R, Changed, Old, New, Groups) :-
    key_groups(Changed, R, Lists0),
    (   R:on_any(Any) -> Lists1 = [Any|Lists0] ; Lists1 = Lists0 ),
    (   ( Old == none ; New == none ),
        R:on_exists(Exists)
    ->  Lists = [Exists|Lists1]
    ;   Lists = Lists1
    ),
    merge_groups(Lists, Groups).

key_groups([], _, []).
key_groups([K-_-_|Cs], R, Lists) :-
    (   R:on_key(K, Groups)
    ->  Lists = [Groups|Lists1]
    ;   Lists = Lists1
    ),
    key_groups(Cs, R, Lists1).

merge_groups([], []) :- !.
merge_groups([Groups], Groups) :- !.
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

%!  rebuild_dispatch(+R) is det.
%
%   The dispatch tables of R (see the module's comment) from its generators.

rebuild_dispatch(R) :-
    retractall(R:changed_keys(_, _, _)),
    retractall(R:on_key(_, _)),
    retractall(R:on_any(_)),
    retractall(R:on_exists(_)),
    retractall(R:found(_, _, _, _, _, _, _)),
    findall(K, R:watched_key(K), Ks0),
    sort(Ks0, Ks),
    changed_keys(Ks, Clause),
    assertz(R:Clause),
    forall(member(K, Ks),
           ( findall(Id-G, R:gen_key(K, Id, G), Pairs),
             group_gens(R, key(K), Pairs, Groups),
             assertz(R:on_key(K, Groups)) )),
    findall(Id-G, R:gen_anykey(Id, G), Any),
    (   Any == []
    ->  true
    ;   group_gens(R, any, Any, AnyGroups),
        assertz(R:on_any(AnyGroups))
    ),
    findall(Id-G, R:gen_exists(Id, G), Exists),
    (   Exists == []
    ->  true
    ;   group_gens(R, exists, Exists, ExistsGroups),
        assertz(R:on_exists(ExistsGroups))
    ).

%   group_gens(+R, +Source, +Pairs, -Groups): Id-g(Need, Limit, [Source]) per watch
%   Id with generators Pairs (Id-G) of Source (key(K), any or exists), ordered by Id:
%   what a change needs of it (need/2) and its inference limit are in the table, so
%   that evaluating a change looks nothing else up for the watches it concerns; and
%   the clause R:found(Source, Id, ...) of found_clause/6.

group_gens(R, Source, Pairs, Groups) :-
    sort(Pairs, Sorted),
    group_pairs_by_key(Sorted, Groups0),
    maplist(group_entry(R, Source), Groups0, Groups).

group_entry(R, Source, Id-Gs, Id-g(Need, Limit, [Source])) :-
    R:watch(Id, Kind, _),
    R:limit(Id, Limit),
    need(Kind, Need),
    found_clause(R, Source, Id, Need, Gs, Clause),
    assertz(R:Clause).

%   found_clause(+R, +Source, +Id, +Need, +Gens, -Clause): the clause of
%   found(Source, Id, Name, Old, New, Head, Known): the candidates of watch Id's
%   generators Gens (those of Source) with what finding each tells (known/3): one
%   disjunction of the generators' bodies (gen0/6 before the change, gen1/6 after
%   it, each with its head unified in its branch), so that a change calls one clause
%   per watch and source instead of each generator in turn. Need appear (an
%   invariant) keeps only what a row that appears needs (see delta/9).

found_clause(R, Source, Id, Need, Gs, (Head :- Body)) :-
    Head = found(Source, Id, Name, Old, New, H, Known),
    findall(b(State, N0, D0, H0, K0, B),
            ( member(G, Gs),
              (   State = 0, clause(R:gen0(Id, G, N0, D0, H0, Kind), B)
              ;   State = 1, clause(R:gen1(Id, G, N0, D0, H0, Kind), B)
              ),
              gen_known(Need, State, Kind, K0)
            ),
            Branches),
    maplist(branch(Name, Old, New, H, Known), Branches, Goals),
    disjunction(Goals, Body).

gen_known(both, State, Kind, Known) :- known(Kind, State, Known).
gen_known(appear, 1, pos, t1).
gen_known(appear, 0, negx, f0).
gen_known(appear, 0, neg, none).

branch(Name, Old, New, H, Known, b(State, N0, D0, H0, K0, B),
       (Name = N0, D = D0, H = H0, Known = K0, B)) :-
    (   State == 0 -> D = Old ; D = New ).

disjunction([], fail).
disjunction([G], G) :- !.
disjunction([G|Gs], (G ; Rest)) :- disjunction(Gs, Rest).

                 /*******************************
                 *          EVALUATION         *
                 *******************************/

evaluate_all(R, Name, Old, New, Rev, Forced, Groups, Rows0, Rows) :-
    budget(Groups, 0, Budget),
    catch(call_with_inference_limit(
              evaluate_batch(Groups, R, Name, Old, New, Rev, Forced, Rows0, Rows1),
              Budget, Result),
          E, true),
    (   var(E), Result \== inference_limit_exceeded
    ->  Rows = Rows1
    ;   nonvar(E), E = octopus_violation(_, _)
    ->  throw(E)
    ;   foldl(evaluate(R, Name, Old, New, Rev, Forced), Groups, Rows0, Rows)
    ).

budget([], B, B).
budget([_-g(_, I, _)|Gs], B0, B) :-
    B1 is B0 + I,
    budget(Gs, B1, B).

%   evaluate_batch(+Groups, +R, +Name, +Old, +New, +Rev, +Forced, +Rows0, -Rows): the
%   rows of every watch Id-g(Need, Limit, Sources) of Groups (no limit of its own:
%   evaluate_all/9 has one), as delta/9 and outcome/9 would find them watch by watch,
%   but with the candidates of all of them found at once (one findall/3 and one sort
%   per change, not per watch: most changes find few candidates, or none).

evaluate_batch(Groups, R, Name, Old, New, Rev, Forced, Rows0, Rows) :-
    findall(Id-H-Known,
            ( member(Id-g(_, _, Sources), Groups),
              member(Source, Sources),
              R:found(Source, Id, Name, Old, New, H, Known)
            ),
            Found),
    (   Found == []
    ->  Rows = Rows0
    ;   msort(Found, Sorted),
        group_pairs_by_key(Sorted, Candidates),
        outcomes(Candidates, Groups, R, Name, Old, Rev, Forced, Rows0, Rows)
    ).

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
%   The candidates of watch Id's generators of Sources (found/7 of found_clause/6)
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
    (   memberchk(t1, Known) -> In1 = true
    ;   memberchk(f1, Known) -> In1 = false
    ;   \+ \+ R:check1(Id, H) -> In1 = true
    ;   In1 = false
    ),
    (   In1 == false, Need == appear
    ->  In0 = unknown                       % cannot appear: no need to know
    ;   memberchk(t0, Known) -> In0 = true
    ;   memberchk(f0, Known) -> In0 = false
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
