:- module(octopus_store,
          [ store_create/2,           % +Store, -Reply
            store_destroy/2,          % +Store, -Reply
            store_get/3,              % +Store, +Name, -Reply
            store_get_many/3,         % +Store, +Names, -Records
            store_first/5,            % +Store, +Candidates, +NamePattern, +Constraints, -Reply
            store_names/5,            % +Store, +Candidates, +NamePattern, +Constraints, -Reply
            store_all/5,              % +Store, +Candidates, +NamePattern, +Constraints, -Reply
            store_exists/5,           % +Store, +Candidates, +NamePattern, +Constraints, -Reply
            store_set/8,              % +Store, +Name, +Attrs, +Constraints, +Sequential, +Rev,
                                      % +Keys, -Reply
            store_delete/4,           % +Store, +Name, +Constraints, -Reply
            store_expire/3,           % +Store, +Name, -Reply
            store_load/5,             % +Store, +Records, +Rev0, +Keys, -Reply
            store_bulk/7,             % +Store, +Shapes, +Values, +Distinct, +Rev0, +Keys, -Reply
            store_key_column/4,       % +Store, +Key, +Generation, -Reply
            store_generation/2,       % +Store, -Generation
            store_count/2,            % +Store, -Count
            store_trim/2,             % +Store, -Reply
            store_trim_above/3,       % +Store, +Bytes, -Reply
            store_release/2,          % +Store, -Reply
            store_collect/2,          % +Store, -Reply
            store_collect/3,          % +Store, +Buckets0, -Buckets
            store_warm/2,             % +Store, -Reply
            store_plan_set/5,         % +Store, +Name, +Constraints, +Sequential, -Reply
            store_match/4,            % +Store, +Name, +Constraints, -Reply
            store_put/7,              % +Store, +Name, +Attrs, +Counter, +Rev, +Keys, -Reply
            store_trial_put/6,        % +Store, +Name, +Attrs, +Counter, +Rev, -Reply
            store_trial_delete/3,     % +Store, +Name, -Reply
            store_trial_load/4,       % +Store, +Records, +Rev0, -Reply
            store_replay/4,           % +Store, +Ops, +Keys, -Reply
            store_snapshot/4,         % +Store, +File, +Keys, -Reply
            store_read_columns/3,     % +File, +IndexAt, -Reply
            store_restore/3           % +Store, +File, -Reply
          ]).

/** <module> The Octopus record store

The records of one engine. Every engine owns one store: a private module Store (named
by the Python side from a counter, never from user data) holding

  - rec(Name, Rev, Dict):      one fact per record, first-argument indexed on Name, a
                               string (an atom would cost ~70 bytes more per record:
                               docs/architecture.md, "The store in Prolog"). Rev is the
                               revision of its last change, Dict its attributes in the
                               stored form of octopus_match;
  - seq(Base, Next):           per-base-name counters of sequential sets (Base an atom);
  - trig(Id, Query):           installed trigger queries (prolog/triggers.pl);
  - '$rules'(Rules):           present while derived watches or invariants exist
                               (prolog/rules.pl): every write then runs inside a
                               transaction and hands each record it changes to
                               rules_change/8, which returns the rows of watches that
                               appear or disappear, or throws when an invariant would
                               be violated (the transaction, hence the write, is
                               undone). The rules keep, in the same transaction, an
                               index of the attribute keys they look up by value or
                               join on ('$rx'/3,
                               '$rx_key'/1): nothing of it exists without rules.

There is no attribute index here: the ordered index of each attribute key that queries
use lives beside the store, in Python (octopus/ordered.py), which hands this module the
candidate names of a query for the full match. To keep that index exact, every write
reports what it replaced: store_set/8 and store_load/5 take the indexed Keys and reply
with the old values of those keys (store_delete/4 replies with the whole old record),
and store_key_column/4 lists a key's values to build a new index.

Revisions are allocated by the caller (which serialises all calls) and passed in.

A durable engine writes every change to its journal before the store applies it, so
it needs the outcome of a conditional or sequential set before the set: it asks
store_plan_set/5 (or store_match/4 for a delete), which decides without changing
anything, then applies the decided change with store_put/7 (or store_delete/4
without constraints). With invariants installed it first asks store_trial_put/6 (or
store_trial_delete/3, store_trial_load/4) whether they would refuse the change, so a
refused write is never journaled. The caller holds its lock between the two calls, so nothing
can change in between. store_snapshot/4 copies the records and counters from a
snapshot/1 view while other threads go on writing (and hands back, from the same
view, the columns of the indexed keys: the snapshot keeps their indexes);
store_restore/3 loads such a copy into an empty store, and store_replay/4 applies
journal entries on top of it.

Replacing a record (retract and assert) runs inside transaction/1, so a failure
half-way leaves nothing behind and a snapshot/1 view in another thread sees the old
record or the new one, never both or neither.

Names arrive from Python as atoms and are stored as strings; replies carry strings
(janus makes a Python str of either). Replies are plain data that janus converts
without tuples: lists, dicts, strings, numbers and @(none)/@(true)/@(false)
(octopus/adapter.py reads them). Errors are raised as error(Formal, Context) terms
(prolog/errors.pl).
*/

:- use_module(library(error)).
:- use_module(library(apply)).
:- use_module(library(lists)).
:- use_module(library(assoc)).
:- use_module(library(pairs)).
:- use_module(library(aggregate)).
:- use_module(match).
:- use_module(errors).
:- use_module(rules, [rules_change/8]).

%!  store_create(+Store, -Reply) is det.
%!  store_destroy(+Store, -Reply) is det.
%
%   Reply is @(true): every predicate called from Python returns a reply.

store_create(M, @(true)) :-
    must_be(atom, M),
    dynamic([M:rec/3, M:seq/2, M:trig/2, M:'$rules'/1, M:'$rx'/3, M:'$rx_key'/1]),
    forall(bulk_clause(Clause), assertz(M:Clause)).

store_destroy(M, @(true)) :-
    must_be(atom, M),
    retractall(M:rec(_, _, _)),
    retractall(M:seq(_, _)),
    retractall(M:trig(_, _)),
    retractall(M:'$rules'(_)),
    retractall(M:'$rx'(_, _, _)),
    retractall(M:'$rx_key'(_)),
    retractall(M:'$bulk_new'(_, _, _, _, _)).

%   name_string(+Name, -String) is det.
%
%   The stored form of a record name (an atom from Python, or already a string).

name_string(Name, S) :-
    (   atom(Name)
    ->  atom_string(Name, S)
    ;   string(Name)
    ->  S = Name
    ;   must_be(atom, Name)
    ).

%!  store_get(+Store, +Name, -Reply) is det.
%
%   The record called Name: Reply is [Rev, Dict], or @(none).

store_get(M, Name, Reply) :-
    name_string(Name, S),
    (   M:rec(S, Rev, Dict)
    ->  Reply = [Rev, Dict]
    ;   Reply = @(none)
    ).

%!  store_get_many(+Store, +Names, -Records) is det.
%
%   The records called Names, as [Name, Rev, Dict] lists (names without a record are
%   left out).

store_get_many(M, Names, Records) :-
    must_be(list, Names),
    findall([S, Rev, Dict],
            ( member(Name, Names),
              name_string(Name, S),
              M:rec(S, Rev, Dict)
            ),
            Records).

%!  store_first(+Store, +Candidates, +NamePattern, +Constraints, -Reply) is det.
%
%   Reply is @(none) when nothing matches, [Name, Rev, Dict] when exactly one record
%   does, and otherwise _{names: Names}, the matching names (the caller picks the
%   first in natural order, which is cheaper in Python than in Prolog, and gets it).
%
%   Candidates is @(none) (visit every record) or a list of names: the only records
%   that can match, as the caller's index found them. The matching of the candidates
%   is complete: the index only saves visits.

store_first(M, Cands, NP0, Cs0, Reply) :-
    prepare_query(NP0, Cs0, Q),
    with_regex_budget(findall(Name, solution(M, Cands, Q, Name, _, _), Names)),
    (   Names == []
    ->  Reply = @(none)
    ;   Names = [Only]
    ->  M:rec(Only, Rev, Dict),
        Reply = [Only, Rev, Dict]
    ;   Reply = _{names: Names}
    ).

%!  store_names(+Store, +Candidates, +NamePattern, +Constraints, -Names) is det.
%
%   The matching names, unordered (the caller sorts).

store_names(M, Cands, NP0, Cs0, Names) :-
    prepare_query(NP0, Cs0, Q),
    with_regex_budget(findall(Name, solution(M, Cands, Q, Name, _, _), Names)).

%!  store_all(+Store, +Candidates, +NamePattern, +Constraints, -Records) is det.
%
%   The matching records as [Name, Rev, Dict] lists, unordered (the caller sorts).

store_all(M, Cands, NP0, Cs0, Records) :-
    prepare_query(NP0, Cs0, Q),
    with_regex_budget(findall([Name, Rev, Dict], solution(M, Cands, Q, Name, Rev, Dict),
                              Records)).

%!  store_exists(+Store, +Candidates, +NamePattern, +Constraints, -Reply) is det.
%
%   Reply is @(true) or @(false).

store_exists(M, Cands, NP0, Cs0, Reply) :-
    prepare_query(NP0, Cs0, Q),
    (   with_regex_budget(solution(M, Cands, Q, _, _, _))
    ->  Reply = @(true)
    ;   Reply = @(false)
    ).

%   solution(+Store, +Candidates, +Query, -Name, -Rev, -Dict) is nondet.
%
%   Enumerate the matching records: the named one, the candidates, or every record.

solution(M, _, q(exact(Name0), Cs), Name, Rev, Dict) :- !,
    name_string(Name0, Name),
    M:rec(Name, Rev, Dict),
    constraints_hold(Cs, Dict).
solution(M, @(none), q(NP, Cs), Name, Rev, Dict) :- !,
    M:rec(Name, Rev, Dict),
    name_ok(NP, Name),
    constraints_hold(Cs, Dict).
solution(M, Cands, q(NP, Cs), Name, Rev, Dict) :-
    must_be(list, Cands),
    member(Cand, Cands),
    name_string(Cand, Name),
    M:rec(Name, Rev, Dict),
    name_ok(NP, Name),
    constraints_hold(Cs, Dict).

name_ok(any, _) :- !.
name_ok(NP, Name) :- record_matches(q(NP, []), Name, _{}).

%!  store_set(+Store, +Name, +Attrs, +Constraints, +Sequential, +Rev, +Keys, -Reply)
%!      is det.
%
%   Replace (or create) record Name with Attrs (a list of Key-Value), provided the
%   stored record satisfies Constraints (a non-empty list needs a stored record).
%   With Sequential = @(true), Name is a base name and the record is stored as
%   Base<N> for the next free N of that base. Reply is @(false) when the conditions
%   do not hold (nothing changed then), else [Final, Old]: the final name and
%   @(none) if there was no record of that name, else the list of the replaced
%   record's values of Keys (@(none) for a key it did not have), or [] if no value of
%   Keys changed (the plain set only: no conditions, not sequential).
%
%   With rules (rules_reply/3): _{value: Value, rows: Rows} when watches have rows to
%   deliver, and _{violation: [Invariant, RowText]} or _{unchecked: [Invariant,
%   Reason]} when an invariant refuses the write (nothing changed then).

store_set(M, Name, Attrs, Cs0, Seq, Rev, Keys, Reply) :-
    prepare_constraints(Cs0, Cs),
    import_pairs(Attrs, Pairs),
    dict_pairs(Dict, _, Pairs),
    (   M:'$rules'(_)                 % (tested first: one lookup on either path)
    ->  (   catch(transaction(set_rules(M, Name, Dict, Cs, Seq, Rev, Keys, Value, Rows)),
                  Refusal, rules_refusal(Refusal, Refused))
        ->  (   var(Refused)
            ->  rules_reply(Value, Rows, Reply0)
            ;   Reply0 = Refused      % an invariant refused it: the transaction undid all
            )
        ;   Reply0 = @(false)         % the conditions failed: the transaction undid all
        ),
        Reply = Reply0
    ;   Cs == [], Seq \== @(true)
    ->  name_string(Name, S),         % the common case: a plain replace
        put_record(M, S, Rev, Dict, Keys, Olds),
        Reply = [S, Olds]
    ;   Seq == @(true)
    ->  must_be(atom, Name),
        (   Cs == []
        ->  transaction(sequential_set(M, Name, Dict, Rev, Final)),
            Reply = [Final, @(none)]
        ;   Reply = @(false)          % a new name has no record to meet conditions
        )
    ;   name_string(Name, S),
        check_name(S),
        (   M:rec(S, _, OldDict)
        ->  (   constraints_hold(Cs, OldDict)
            ->  transaction(replace_record(M, S, Rev, Dict)),
                old_values(Keys, OldDict, Olds),
                Reply = [S, Olds]
            ;   Reply = @(false)
            )
        ;   Cs == []
        ->  assertz(M:rec(S, Rev, Dict)),
            Reply = [S, @(none)]
        ;   Reply = @(false)          % conditions need a stored record
        )
    ).

%   set_rules(+M, +Name, +Dict, +Cs, +Seq, +Rev, +Keys, -Value, -Rows): store_set/8's
%   change inside its transaction, handed to the rules; fails if the conditions do not
%   hold.

set_rules(M, Name, Dict, [], Seq, Rev, Keys, [S, Olds], Rows) :-
    Seq \== @(true),
    !,
    % the plain replace, as put_record/6: retract/1 finds the old record (no lookup
    % before it), and a stored name was checked when it was created
    name_string(Name, S),
    (   retract(M:rec(S, _, OldDict))
    ->  assertz(M:rec(S, Rev, Dict)),
        changed_values(Keys, OldDict, Dict, Olds)
    ;   check_name(S),
        assertz(M:rec(S, Rev, Dict)),
        OldDict = none,
        Olds = @(none)
    ),
    (   atom(Name) -> A = Name ; atom_string(A, S) ),
    rules_change(M, A, OldDict, Dict, Rev, @(false), [], Rows).
set_rules(M, Name, Dict, Cs, Seq, Rev, Keys, [S, Olds], Rows) :-
    (   Seq == @(true)
    ->  must_be(atom, Name),
        Cs == [],
        next_sequential_name(M, Name, S),
        check_name(S),
        OldDict = none
    ;   name_string(Name, S),
        check_name(S),
        (   M:rec(S, _, OldDict)
        ->  constraints_hold(Cs, OldDict)
        ;   Cs == [],
            OldDict = none
        )
    ),
    (   OldDict == none
    ->  Olds = @(none),
        assertz(M:rec(S, Rev, Dict))
    ;   old_values(Keys, OldDict, Olds),
        replace_record(M, S, Rev, Dict)
    ),
    atom_string(A, S),
    rules_change(M, A, OldDict, Dict, Rev, @(false), [], Rows).

%   rules_reply(+Value, +Rows, -Reply): Value alone without rows to deliver.

rules_reply(Value, [], Value) :- !.
rules_reply(Value, Rows0, _{value: Value, rows: Rows}) :-
    reverse(Rows0, Rows).                 % rules_change/8 adds the newest first

%   rules_refusal(+Ball, -Reply): an invariant's refusal as a reply; rethrow others.

rules_refusal(octopus_violation(Invariant, Row), _{violation: [Invariant, Row]}) :- !.
rules_refusal(octopus_unchecked(Invariant, Reason),
              _{unchecked: [Invariant, Reason]}) :- !.
rules_refusal(E, _) :-
    throw(E).

%   rules_write(+Goal, -Value, -Rows, -Reply): run Goal(Value, Rows) in a transaction;
%   Reply as store_set/8's with rules.

rules_write(Goal, Value, Rows, Reply) :-
    catch(transaction(Goal), Refusal, rules_refusal(Refusal, Refused)),
    (   var(Refused)
    ->  rules_reply(Value, Rows, Reply)
    ;   Reply = Refused
    ).

old_values([], _, []).
old_values([Key|Keys], Dict, [V|Vs]) :-
    (   get_dict(Key, Dict, V0) -> V = V0 ; V = @(none) ),
    old_values(Keys, Dict, Vs).

%   import_pairs(+Attrs, -Pairs): Key-Value pairs from Python, values in stored form.

import_pairs([], []).
import_pairs([K-V0|Attrs], [K-V|Pairs]) :-
    (   atom(K) -> true ; must_be(atom, K) ),
    (   atom(V0)                  % the common kinds inline: import_value/2 is a call
    ->  atom_string(V0, V)
    ;   number(V0)
    ->  V = V0
    ;   import_value(V0, V)
    ),
    import_pairs(Attrs, Pairs).

replace_record(M, S, Rev, Dict) :-
    retract(M:rec(S, _, _)),
    assertz(M:rec(S, Rev, Dict)).

%   put_record(+Store, +S, +Rev, +Dict, +Keys, -Olds): store record S unconditionally;
%   Olds as store_set/8 replies it. A replace looks the name up once: retract/1 finds
%   the old record and hands back its dict (a lookup before it, as a conditional set
%   needs, would be a second). A stored name was checked when it was created.

put_record(M, S, Rev, Dict, Keys, Olds) :-
    (   transaction(swap_record(M, S, Rev, Dict, OldDict))
    ->  changed_values(Keys, OldDict, Dict, Olds)
    ;   check_name(S),
        assertz(M:rec(S, Rev, Dict)),
        Olds = @(none)
    ).

swap_record(M, S, Rev, Dict, OldDict) :-
    retract(M:rec(S, _, OldDict)),
    assertz(M:rec(S, Rev, Dict)).

%   changed_values(+Keys, +OldDict, +NewDict, -Olds): Olds is [] when every key of Keys
%   has the same value (==) in both dicts, or none in either: the caller's indexes of
%   those keys have nothing to change (the usual replace). Otherwise as old_values/3.

changed_values(Keys, Old, New, Olds) :-
    (   same_values(Keys, Old, New)
    ->  Olds = []
    ;   old_values(Keys, Old, Olds)
    ).

same_values([], _, _).
same_values([Key|Keys], Old, New) :-
    (   get_dict(Key, Old, V)
    ->  get_dict(Key, New, W),
        V == W
    ;   \+ get_dict(Key, New, _)
    ),
    same_values(Keys, Old, New).

sequential_set(M, Base, Dict, Rev, Name) :-
    next_sequential_name(M, Base, Name),
    check_name(Name),
    assertz(M:rec(Name, Rev, Dict)).

next_sequential_name(M, Base, Name) :-
    (   retract(M:seq(Base, N0)) -> true ; N0 = 0 ),
    free_name(M, Base, N0, N, Name),
    N1 is N + 1,
    assertz(M:seq(Base, N1)).

free_name(M, Base, N0, N, Name) :-
    number_string(N0, Digits),
    string_concat(Base, Digits, Name0),
    (   M:rec(Name0, _, _)
    ->  N1 is N0 + 1,
        free_name(M, Base, N1, N, Name)
    ;   N = N0,
        Name = Name0
    ).

%!  store_delete(+Store, +Name, +Constraints, -Reply) is det.
%
%   Delete record Name if it satisfies Constraints. Reply is [OldRev, OldDict], or
%   @(none) when there was no such record (nothing changes then). One retract: atomic
%   by itself. With rules, as for store_set/8 (the value being [OldRev, OldDict]).

store_delete(M, Name, Cs0, Reply) :-
    prepare_constraints(Cs0, Cs),
    name_string(Name, S),
    (   M:'$rules'(_)
    ->  rules_write(delete_rules(M, S, Cs, @(false), Value, Rows), Value, Rows, Reply0),
        Reply = Reply0
    ;   clause(M:rec(S, Rev, Dict), true, Ref),
        constraints_hold(Cs, Dict)
    ->  erase(Ref),
        Reply = [Rev, Dict]
    ;   Reply = @(none)
    ).

%!  store_expire(+Store, +Name, -Reply) is det.
%
%   Delete record Name, as store_delete/4 without constraints, for a session that
%   ends: invariants do not refuse it (a session's end cannot be refused); a
%   violation it causes comes back as a row of kind violated.

store_expire(M, Name, Reply) :-
    (   M:'$rules'(_)
    ->  name_string(Name, S),
        rules_write(delete_rules(M, S, [], @(true), Value, Rows), Value, Rows, Reply0),
        Reply = Reply0
    ;   store_delete(M, Name, [], Reply)
    ).

delete_rules(M, S, Cs, Forced, Reply, Rows) :-
    (   M:rec(S, Rev, Dict),
        constraints_hold(Cs, Dict)
    ->  retract(M:rec(S, _, _)),
        Reply = [Rev, Dict],
        atom_string(A, S),
        rules_change(M, A, Dict, none, @(none), Forced, [], Rows)
    ;   Reply = @(none),
        Rows = []
    ).

%!  store_load(+Store, +Records, +Rev0, +Keys, -Reply) is det.
%
%   Bulk replace: Records is a list of -(Name, Attrs); the i-th (from 1) gets
%   revision Rev0+i. All or nothing. Reply is [Count, New, Olds]: the number of
%   records stored, how many of them were new names, and for each record in order
%   what store_set/8 says of it (@(none), or the replaced values of Keys) when Keys
%   is not [] (else Olds is []).
%
%   Everything is read and checked first; the transaction then only asserts (and
%   retracts the records replaced). Looking records up inside the transaction, between
%   its asserts, left ~100 bytes per record behind (measured: 576 instead of 480 bytes
%   per record loaded in batches of 10,000). With rules, as for store_set/8.

store_load(M, Records, Rev0, Keys, Reply) :-
    must_be(list, Records),
    (   distinct_names(Records)
    ->  Seen0 = none                    % the common case: no name twice in the batch
    ;   empty_assoc(Seen0)
    ),
    load_plan(Records, M, Keys, Rev0, Rev, Seen0, 0, New, Plan, Olds0),
    load_commit(M, Plan, Rev0, Rev, New, Keys, Olds0, Reply).

%   load_commit(+M, +Plan, +Rev0, +Rev, +New, +Keys, +Olds0, -Reply): apply a checked
%   plan in one transaction (store_load/5, store_bulk/7).

load_commit(M, Plan, Rev0, Rev, New, Keys, Olds0, Reply) :-
    Count is Rev - Rev0,
    (   Keys == [] -> Olds = [] ; Olds = Olds0 ),
    (   M:'$rules'(_)
    ->  rules_write(foldl(load_rules(M), Plan, [], Rows), [Count, New, Olds], Rows, Reply0),
        Reply = Reply0
    ;   transaction(maplist(load_apply(M), Plan)),
        Reply = [Count, New, Olds]
    ).

%   load_rules(+M, +Put, +Rows0, -Rows): load_apply/2, handing the change to the rules.

load_rules(M, put(_, S, Rev, Dict), Rows0, Rows) :-
    (   retract(M:rec(S, _, Old)) -> true ; Old = none ),
    assertz(M:rec(S, Rev, Dict)),
    atom_string(A, S),
    rules_change(M, A, Old, Dict, Rev, @(false), Rows0, Rows).

distinct_names(Records) :-
    findall(N, member(-(N, _), Records), Names),
    sort(Names, Set),
    same_length(Names, Set).

%   load_plan(+Records, +Store, +Keys, +Rev0, -Rev, +Seen, +New0, -New, -Plan, -Olds)
%
%   Plan holds put(Replace, Name, Rev, Dict) per record; Replace is true if a record of
%   that name exists by then (in the store, or earlier in the batch: Seen maps those
%   names to their dicts; none when no name comes twice).

load_plan([], _, _, Rev, Rev, _, New, New, [], []).
load_plan([-(Name, Attrs)|Records], M, Keys, Rev0, Rev, Seen0, New0, New,
          [put(Replace, S, Rev1, Dict)|Plan], [Old|Olds]) :-
    name_string(Name, S),
    import_pairs(Attrs, Pairs),
    dict_pairs(Dict, _, Pairs),
    Rev1 is Rev0 + 1,
    plan_put(M, Keys, S, Dict, Seen0, Seen1, New0, New1, Replace, Old),
    load_plan(Records, M, Keys, Rev1, Rev, Seen1, New1, New, Plan, Olds).

%   plan_put(+Store, +Keys, +Name, +Dict, +Seen0, -Seen, +New0, -New, -Replace, -Old)
%
%   One record of a load's plan: whether it replaces a stored record or one earlier in
%   the batch (Seen, an assoc of the batch's names, or none when the names are known
%   to be distinct), the count of new records, and the replaced values of Keys.

plan_put(M, Keys, S, Dict, Seen0, Seen1, New0, New1, Replace, Old) :-
    (   (   Seen0 \== none,
            get_assoc(S, Seen0, OldDict)
        ->  true
        ;   M:rec(S, _, OldDict)
        )
    ->  Replace = true,
        New1 = New0,
        old_values(Keys, OldDict, Old)
    ;   Replace = false,
        New1 is New0 + 1,
        Old = @(none)
    ),
    (   Seen0 == none
    ->  Seen1 = none
    ;   put_assoc(S, Seen0, Dict, Seen1)
    ).

%!  store_bulk(+Store, +Shapes, +Values, +Distinct, +Rev0, +Keys, -Reply) is det.
%
%   store_load/5 for a bulk load, with the batch in the form that costs least to
%   convert and store (bench/load.py): Shapes is a list of key lists (atoms, sorted);
%   Values a Python object whose attribute value is a flat list holding, per record,
%   the 1-based number of its shape, its name, then its values in the order of the
%   shape's keys, already in stored form (strings, numbers, @(true)/@(false), [Text]
%   for an identifier). The list is fetched with py_call/3 and py_string_as(string):
%   a Python str handed to a Prolog call would arrive as an atom, and the atoms of a
%   million names and strings, made, converted to strings and garbage collected, cost
%   more than the rest of the load. Distinct is @(true) when the caller knows that no
%   name comes twice in the batch. Each shape becomes a clause of the thread-local
%   bulk_shape/4 whose head takes the shape's values off the list and builds its
%   dict, so a record's dict costs one clause call. Reply as store_load/5; all or
%   nothing.

store_bulk(M, Shapes, Values, Distinct, Rev0, Keys, Reply) :-
    must_be(list, Shapes),
    janus:py_call(Values:value, Flat, [py_string_as(string)]),
    must_be(list, Flat),
    (   Distinct == @(true),
        Keys == [],
        \+ M:'$rules'(_)
    ->  setup_call_cleanup(
            bulk_shapes(Shapes, 1),
            transaction(M:'$bulk_new'(Flat, Rev0, Rev, 0, New)),
            retractall(bulk_shape(_, _, _, _))),
        Count is Rev - Rev0,
        Reply = [Count, New, []]
    ;   setup_call_cleanup(
            bulk_shapes(Shapes, 1),
            bulk_plan(Distinct, Keys, Flat, M, Rev0, Rev, New, Plan, Olds),
            retractall(bulk_shape(_, _, _, _))),
        (   Keys == [],
            \+ M:'$rules'(_)
        ->  Count is Rev - Rev0,
            transaction(bulk_apply(Plan, M)),
            Reply = [Count, New, []]
        ;   load_commit(M, Plan, Rev0, Rev, New, Keys, Olds, Reply)
        )
    ).

%   bulk_clause(-Clause) is nondet.
%
%   The clauses of '$bulk_new'/5, which store_create/2 adds to every store module:
%   store_bulk/7's loop for the common case (no name twice in the batch, no ordered
%   index to tell, no rules), run inside one transaction: per record, take its
%   values off the flat list and build its dict (one call of its shape's
%   bulk_shape/4 clause), replace the record of that name if one is stored, and
%   assert it. The loop lives in the store's module so that rec/3 is called
%   directly: a call of M:rec(...) with M known only at run time is a meta-call,
%   which cost ~0.6 µs more per lookup (bench/load.py). A bad list throws, and the
%   transaction undoes the records asserted before it.

bulk_clause(('$bulk_new'([], Rev, Rev, New, New) :- !)).
bulk_clause(('$bulk_new'([Shape, S|Flat0], Rev0, Rev, New0, New) :-
                string(S),
                octopus_store:bulk_shape(Shape, Flat0, Flat, Dict),
                !,
                Rev1 is Rev0 + 1,
                (   rec(S, _, _)
                ->  retract(rec(S, _, _)),
                    New1 = New0
                ;   New1 is New0 + 1
                ),
                assertz(rec(S, Rev1, Dict)),
                '$bulk_new'(Flat, Rev1, Rev, New1, New))).
bulk_clause(('$bulk_new'(Flat, _, _, _, _) :-
                octopus_store:bulk_bad(Flat))).

bulk_bad(Flat) :-
    domain_error(octopus_bulk_batch, Flat).

%   bulk_plan(+Distinct, +Keys, +Flat, +Store, +Rev0, -Rev, -New, -Plan, -Olds)
%
%   load_plan/10 of a bulk batch. The common case, no name twice and no ordered
%   index to tell (Keys = []), has a loop of its own that only asks whether each name
%   is stored.

bulk_plan(Distinct, Keys, Flat, M, Rev0, Rev, New, Plan, Olds) :-
    (   Distinct == @(true),
        Keys == []
    ->  bulk_plan_new(Flat, M, Rev0, Rev, 0, New, Plan),
        Olds = []
    ;   (   Distinct == @(true)
        ->  Seen0 = none
        ;   empty_assoc(Seen0)
        ),
        bulk_plan(Flat, M, Keys, Rev0, Rev, Seen0, 0, New, Plan, Olds)
    ).

bulk_plan_new([], _, Rev, Rev, New, New, []) :- !.
bulk_plan_new([Shape, S|Flat0], M, Rev0, Rev, New0, New,
              [put(Replace, S, Rev1, Dict)|Plan]) :-
    string(S),
    bulk_shape(Shape, Flat0, Flat, Dict),
    !,
    Rev1 is Rev0 + 1,
    (   M:rec(S, _, _)
    ->  Replace = true,
        New1 = New0
    ;   Replace = false,
        New1 is New0 + 1
    ),
    bulk_plan_new(Flat, M, Rev1, Rev, New1, New, Plan).
bulk_plan_new(Flat, _, _, _, _, _, _) :-
    domain_error(octopus_bulk_batch, Flat).

bulk_apply([], _).
bulk_apply([put(Replace, S, Rev, Dict)|Plan], M) :-
    (   Replace == true
    ->  retract(M:rec(S, _, _))
    ;   true
    ),
    assertz(M:rec(S, Rev, Dict)),
    bulk_apply(Plan, M).

:- thread_local bulk_shape/4.       % bulk_shape(Number, Flat0, Flat, Dict)

bulk_shapes([], _).
bulk_shapes([Keys|Shapes], I) :-
    must_be(list(atom), Keys),
    same_length(Keys, Values),
    pairs_keys_values(Pairs, Keys, Values),
    dict_pairs(Dict, _, Pairs),
    append(Values, Flat, Flat0),
    assertz(bulk_shape(I, Flat0, Flat, Dict)),
    I1 is I + 1,
    bulk_shapes(Shapes, I1).

bulk_plan([], _, _, Rev, Rev, _, New, New, [], []) :- !.
bulk_plan([Shape, S|Flat0], M, Keys, Rev0, Rev, Seen0, New0, New,
          [put(Replace, S, Rev1, Dict)|Plan], [Old|Olds]) :-
    string(S),
    bulk_shape(Shape, Flat0, Flat, Dict),
    !,
    Rev1 is Rev0 + 1,
    plan_put(M, Keys, S, Dict, Seen0, Seen1, New0, New1, Replace, Old),
    bulk_plan(Flat, M, Keys, Rev1, Rev, Seen1, New1, New, Plan, Olds).
bulk_plan(Flat, _, _, _, _, _, _, _, _, _) :-
    domain_error(octopus_bulk_batch, Flat).

load_apply(M, put(Replace, S, Rev, Dict)) :-
    (   Replace == true
    ->  retract(M:rec(S, _, _))
    ;   true
    ),
    assertz(M:rec(S, Rev, Dict)).

%!  store_key_column(+Store, +Key, +Generation, -Reply) is det.
%
%   Every record's value of Key, to build its index: Reply is [Gen, Names, Values],
%   the i-th value being record i's (@(none) where it has none), in clause order,
%   unsorted (Python sorts a million positions in well under a second, where msort/2
%   of Value-Name pairs took 2-3 s: octopus/ordered.py, sorted_runs/2). Gen is
%   store_generation/2's. Names is @(none) when Generation is Gen: the caller kept
%   the names of an earlier reply, and they are still every record's, in this order
%   (sending them again, a million strings, cost more than the values).

store_key_column(M, Key, Gen0, [Gen, Names, Values]) :-
    must_be(atom, Key),
    store_generation(M, Gen),
    (   Gen0 == Gen
    ->  Names = @(none)
    ;   findall(N, M:rec(N, _, _), Names)
    ),
    findall(V, ( M:rec(_, _, D), ( get_dict(Key, D, V0) -> V = V0 ; V = @(none) ) ),
            Values).

%!  store_generation(+Store, -Generation) is det.
%
%   The database generation at which a record was last added or removed (0 before
%   any): while it stays the same, the records and their clause order do.

store_generation(M, Gen) :-
    (   predicate_property(M:rec(_, _, _), last_modified_generation(Gen0))
    ->  Gen = Gen0
    ;   Gen = 0
    ).

%!  store_count(+Store, -Count) is det.
%
%   The number of records (counts the clauses: linear in the store's size; the
%   adapter keeps its own count and asks only to resynchronise).

store_count(M, Count) :-
    predicate_property(M:rec(_, _, _), number_of_clauses(Count)), !.
store_count(_, 0).

%!  store_trim(+Store, -Reply) is det.
%
%   Give back the memory of the calling thread's Prolog stacks above what they use:
%   called after a call with a large argument or reply (a bulk load, an index
%   build), whose stacks would otherwise keep their high-water mark (measured: ~100
%   bytes per record loaded in batches of 10,000). Reply is @(true).

store_trim(_, @(true)) :-
    trim_stacks.

%!  store_release(+Store, -Reply) is det.
%
%   store_trim/2, and give the free pages of the C heap back to the system
%   (trim_heap/0, glibc's malloc_trim()): after building an ordered index, whose
%   column lists (two a record) were freed in Python and would otherwise stay in the
%   process as free heap (~0.25 s at 1,000,000 records, beside a build of ~2 s).
%   Reply is @(true).

store_release(_, @(true)) :-
    trim_stacks,
    trim_heap.

%!  store_trim_above(+Store, +Bytes, -Reply) is det.
%
%   store_trim/2 when the calling thread's stacks hold more than Bytes, else nothing:
%   after each batch of a bulk load. Trimming after every batch made the next one grow
%   the stacks again, which cost more than storing it (measured: 1.5-2 µs of 4 per
%   record, bench/load.py); the stacks a batch of 10,000 records needs (~10 MiB) are
%   kept, larger ones given back. Reply is @(true).

store_trim_above(_, Bytes, @(true)) :-
    statistics(stack, Used),
    (   Used > Bytes
    ->  trim_stacks
    ;   true
    ).

%!  store_collect(+Store, -Reply) is det.
%
%   Free the clause indexes SWI-Prolog retired while rec/3 grew, and give the memory
%   back to the system. A hash index that outgrows its table is rebuilt twice as big
%   (SWI-Prolog 9.2: when it holds more than 1.5 clauses a bucket), and the old
%   one is freed only by clause garbage collection, which runs only when the
%   predicate has erased clauses: a store that only grew kept every old index
%   (measured: ~55 bytes a record). An assert and an erase in one transaction
%   (invisible to every other view) make rec/3 dirty, and garbage_collect_clauses/0
%   frees them. The freed tables leave free pages in the C heap that the process
%   would keep, so trim_heap/0 (glibc's malloc_trim()) hands them back. Costs at 1,000,000 records: ~0.3 s and ~0.25 s, so the caller runs
%   this only when an index was rebuilt (store_collect/3). Reply is @(true).

store_collect(M, @(true)) :-
    transaction(( assertz(M:rec("", 0, _{}), Ref), erase(Ref) )),
    garbage_collect_clauses,
    trim_heap.

%!  store_collect(+Store, +Buckets0, -Buckets) is det.
%
%   Buckets is the size of rec/3's clause indexes now (their buckets, summed); when it
%   differs from Buckets0 an index was rebuilt since the caller last asked, and
%   store_collect/2 frees the one it replaced. The caller asks as the store grows
%   (octopus/adapter.py says when), so a retired index is freed soon after it is
%   retired instead of staying until the next scheduled collection.

store_collect(M, Buckets0, Buckets) :-
    index_buckets(M, Buckets),
    (   Buckets == Buckets0
    ->  true
    ;   store_collect(M, _)
    ).

index_buckets(M, Buckets) :-
    (   predicate_property(M:rec(_, _, _), indexed(Indexes))
    ->  aggregate_all(sum(N), member(_-hash(N, _, _, _), Indexes), Buckets)
    ;   Buckets = 0
    ).

%!  store_warm(+Store, -Reply) is det.
%
%   Build the JIT clause index of the records now (after a bulk load) instead of on
%   the first query that needs it.

store_warm(M, @(true)) :-
    ignore(M:rec("$octopus_warm", _, _)).


%!  store_plan_set(+Store, +Name, +Constraints, +Sequential, -Reply) is det.
%
%   What store_set/8 would do, without doing it: Reply is @(false) when the
%   conditions do not hold, else [Final, Next] where Final is the name the record
%   would be stored under and Next the value of Name's sequence counter after a
%   sequential set (@(none) for a plain one).

store_plan_set(M, Name, Cs0, Seq, Reply) :-
    must_be(atom, Name),
    prepare_constraints(Cs0, Cs),
    (   Seq == @(true)
    ->  (   M:seq(Name, N0) -> true ; N0 = 0 ),
        free_name(M, Name, N0, N, Final),
        Next is N + 1
    ;   name_string(Name, Final),
        Next = @(none)
    ),
    check_name(Final),
    (   Cs == []
    ->  Reply = [Final, Next]
    ;   M:rec(Final, _, Old),
        constraints_hold(Cs, Old)
    ->  Reply = [Final, Next]
    ;   Reply = @(false)
    ).

%!  store_match(+Store, +Name, +Constraints, -Reply) is det.
%
%   The record Name if it satisfies Constraints, as [Rev, Dict], else @(none).
%   Changes nothing (store_delete/4 without constraints then deletes it).

store_match(M, Name, Cs0, Reply) :-
    prepare_constraints(Cs0, Cs),
    name_string(Name, S),
    (   M:rec(S, Rev, Dict),
        constraints_hold(Cs, Dict)
    ->  Reply = [Rev, Dict]
    ;   Reply = @(none)
    ).

%!  store_put(+Store, +Name, +Attrs, +Counter, +Rev, +Keys, -Reply) is det.
%
%   Store record Name with Attrs at Rev, unconditionally. Counter is @(none) or
%   [Base, Next]: the sequence counter of Base becomes at least Next (counters
%   never go back, so applying a journal entry twice changes nothing more). Reply is
%   what store_set/8 says of the record replaced: @(none), or its values of Keys ([]
%   when none of them changed and Counter is @(none)); with rules, as for store_set/8.

store_put(M, Name, Attrs, Counter, Rev, Keys, Reply) :-
    name_string(Name, S),
    import_pairs(Attrs, Pairs),
    dict_pairs(Dict, _, Pairs),
    (   M:'$rules'(_)
    ->  rules_write(put_rules(M, S, Dict, Counter, Rev, Keys, Old, Rows), Old, Rows, Reply0),
        Reply = Reply0
    ;   Counter == @(none)
    ->  put_record(M, S, Rev, Dict, Keys, Reply)
    ;   transaction(put_(M, S, Dict, Counter, Rev, Keys, Reply))
    ).

put_rules(M, S, Dict, Counter, Rev, Keys, Old, Rows) :-
    advance_counter(Counter, M),
    (   retract(M:rec(S, _, OldDict))
    ->  old_values(Keys, OldDict, Old)
    ;   OldDict = none,
        Old = @(none)
    ),
    assertz(M:rec(S, Rev, Dict)),
    atom_string(A, S),
    rules_change(M, A, OldDict, Dict, Rev, @(false), [], Rows).

%!  store_trial_put(+Store, +Name, +Attrs, +Counter, +Rev, -Reply) is det.
%!  store_trial_delete(+Store, +Name, -Reply) is det.
%!  store_trial_load(+Store, +Records, +Rev0, -Reply) is det.
%
%   What the invariants would say to a write, without writing: @(true), or the
%   refusal as store_set/8 replies it. The write and the rules run in snapshot/1,
%   which discards every change they make. A durable engine asks before it
%   journals a write, so that a write an invariant refuses never reaches the
%   journal (the write itself then runs as usual, and is checked again).

store_trial_put(M, Name, Attrs, Counter, Rev, Reply) :-
    name_string(Name, S),
    import_pairs(Attrs, Pairs),
    dict_pairs(Dict, _, Pairs),
    trial(M, put_rules(M, S, Dict, Counter, Rev, [], _, _), Reply).

store_trial_delete(M, Name, Reply) :-
    name_string(Name, S),
    trial(M, delete_rules(M, S, [], @(false), _, _), Reply).

store_trial_load(M, Records, Rev0, Reply) :-
    must_be(list, Records),
    (   M:'$rules'(_)
    ->  empty_assoc(Seen0),
        load_plan(Records, M, [], Rev0, _, Seen0, 0, _, Plan, _),
        trial(M, foldl(load_rules(M), Plan, [], _), Reply)
    ;   Reply = @(true)
    ).

trial(M, Goal, Reply) :-
    (   M:'$rules'(_)
    ->  (   catch(snapshot(Goal), Refusal, rules_refusal(Refusal, Refused))
        ->  true
        ;   true
        ),
        (   var(Refused)
        ->  Reply = @(true)
        ;   Reply = Refused
        )
    ;   Reply = @(true)
    ).

put_(M, S, Dict, Counter, Rev, Keys, Old) :-
    advance_counter(Counter, M),
    (   retract(M:rec(S, _, OldDict))
    ->  old_values(Keys, OldDict, Old)
    ;   Old = @(none)
    ),
    assertz(M:rec(S, Rev, Dict)).

advance_counter(@(none), _) :- !.
advance_counter([Base, Next], M) :-
    must_be(atom, Base),
    must_be(nonneg, Next),
    (   M:seq(Base, N0)
    ->  (   N0 >= Next
        ->  true
        ;   retract(M:seq(Base, N0)),
            assertz(M:seq(Base, Next))
        )
    ;   assertz(M:seq(Base, Next))
    ).

%!  store_replay(+Store, +Ops, +Keys, -Reply) is det.
%
%   Apply journal entries in order: each is [s, Rev, Name, Attrs, Counter]
%   (store_put/7) or [d, Name] (delete if present). Every entry is idempotent:
%   applied on top of a snapshot that already holds some of them, the result is the
%   same. Not a transaction (for recovery only: a store whose replay failed is thrown
%   away). Reply is [Entries, Change, Olds]: the number of entries, by how much the
%   number of records changed (the adapter keeps the count) and, when Keys is not []
%   (the keys whose indexes the snapshot restored), what each entry replaced or
%   deleted as store_set/8 says it: @(none), or the old record's values of Keys
%   (Olds is [] when Keys is).

store_replay(M, Ops, Keys, [Count, Change, Olds]) :-
    must_be(list, Ops),
    must_be(list, Keys),
    replay_ops(Ops, M, Keys, 0, Change, Olds0),
    (   Keys == [] -> Olds = [] ; Olds = Olds0 ),
    length(Ops, Count).

replay_ops([], _, _, C, C, []).
replay_ops([Op|Ops], M, Keys, C0, C, [Old|Olds]) :-
    replay_op(Op, M, Keys, Old, C0, C1),
    replay_ops(Ops, M, Keys, C1, C, Olds).

replay_op([s, Rev, Name, Attrs, Counter], M, Keys, Old, C0, C) :- !,
    must_be(atom, Name),
    name_string(Name, S),
    import_pairs(Attrs, Pairs),
    dict_pairs(Dict, _, Pairs),
    put_(M, S, Dict, Counter, Rev, Keys, Old),
    (   Old == @(none) -> C is C0 + 1 ; C = C0 ).
replay_op([d, Name], M, Keys, Old, C0, C) :- !,
    must_be(atom, Name),
    name_string(Name, S),
    (   retract(M:rec(S, _, Dict))
    ->  old_values(Keys, Dict, Old),
        C is C0 - 1
    ;   Old = @(none),
        C = C0
    ).
replay_op(Op, _, _, _, _, _) :-
    domain_error(octopus_journal_op, Op).

%!  store_snapshot(+Store, +File, +Keys, -Reply) is det.
%
%   Write the records and sequence counters to File (created or truncated) from a
%   snapshot/1 view: a consistent state, while other threads go on changing the
%   store. The file holds fast_write/2 terms: snapshot(2), then recs(Recs) per 1,000
%   records, each rec(Name, Rev, Dict) (reading a term of a thousand records took 15-30%
%   less than a thousand terms: bench/RESULTS.md, "Durability, restart"), seq(Base,
%   Next) per counter, and end(Records). When Keys is not [],
%   the columns of those keys follow, from the same view, so that a restart builds
%   their indexes without asking the store (store_read_columns/3): index(Keys),
%   names(Names) (every record's name) and, per key, column(Key, Values) (each
%   record's value, aligned with Names; @(none) where it has none), then end_index.
%   Reply is [Count, IndexAt]: the number of records and the byte offset of index/1
%   (0 without Keys).

store_snapshot(M, File, Keys, Reply) :-
    must_be(atom, M),
    must_be(list(atom), Keys),
    setup_call_cleanup(
        open(File, write, Out, [type(binary)]),
        snapshot(write_snapshot(M, Out, Keys, Reply)),
        close(Out)).

write_snapshot(M, Out, Keys, [Count, IndexAt]) :-
    fast_write(Out, snapshot(2)),
    State = count(0),
    forall(findnsols(1000, rec(Name, Rev, Dict), M:rec(Name, Rev, Dict), Recs),
           (   Recs == []
           ->  true
           ;   fast_write(Out, recs(Recs)),
               length(Recs, Len),
               arg(1, State, N0), N is N0 + Len, nb_setarg(1, State, N)
           )),
    forall(M:seq(Base, Next), fast_write(Out, seq(Base, Next))),
    arg(1, State, Count),
    fast_write(Out, end(Count)),
    (   Keys == []
    ->  IndexAt = 0
    ;   byte_count(Out, IndexAt),
        fast_write(Out, index(Keys)),
        findall(Name, M:rec(Name, _, _), Names),
        fast_write(Out, names(Names)),
        forall(member(Key, Keys),
               ( findall(V, ( M:rec(_, _, D),
                              ( get_dict(Key, D, V0) -> V = V0 ; V = @(none) ) ),
                         Values),
                 fast_write(Out, column(Key, Values))
               )),
        fast_write(Out, end_index)
    ).

%!  store_read_columns(+File, +IndexAt, -Reply) is det.
%
%   The columns store_snapshot/4 wrote at byte offset IndexAt of File: Reply is
%   [Keys, Names, Columns]. Touches no store: a restart reads them in a thread of its
%   own while store_restore/3 loads the records.

store_read_columns(File, IndexAt, [Keys, Names, Columns]) :-
    must_be(nonneg, IndexAt),
    setup_call_cleanup(
        open(File, read, In, [type(binary)]),
        ( seek(In, IndexAt, bof, _),
          fast_read(In, Index),
          (   Index = index(Keys), is_list(Keys) -> true
          ;   snapshot_index_error(index, Index)
          ),
          fast_read(In, NamesTerm),
          (   NamesTerm = names(Names), is_list(Names) -> true
          ;   snapshot_index_error(names, NamesTerm)
          ),
          maplist(read_column(In), Keys, Columns),
          fast_read(In, End),
          (   End == end_index -> true ; snapshot_index_error(end_index, End) )
        ),
        close(In)).

read_column(In, Key, Values) :-
    fast_read(In, Term),
    (   Term = column(Key, Values), is_list(Values) -> true
    ;   snapshot_index_error(column(Key), Term)
    ).

%   snapshot_index_error(+Expected, +Found): the error for a term that is not what
%   the columns hold there, naming only the functor of what was found (the term may
%   hold a million values, and the message goes to a log).

snapshot_index_error(Expected, Found) :-
    (   compound(Found) -> functor(Found, Name, Arity), What = Name/Arity ; What = Found ),
    domain_error(octopus_snapshot_index(Expected), What).

%!  store_restore(+Store, +File, -Reply) is det.
%
%   Load a file written by store_snapshot/4 into an empty store: records and
%   counters. Reads up to the end/1 term (what follows belongs to the caller); a
%   snapshot(1) file has a rec/3 term per record instead of recs/1 chunks. Reply
%   is the number of records. Not a transaction (one of a million records takes
%   twice as long): a store whose restore failed is thrown away by the caller, never
%   used. Names are stored as strings whatever the file holds (snapshots written
%   before names were strings hold atoms).

store_restore(M, File, Count) :-
    must_be(atom, M),
    (   M:rec(_, _, _)
    ->  permission_error(restore, octopus_store, M)
    ;   true
    ),
    setup_call_cleanup(
        open(File, read, In, [type(binary)]),
        restore_(M, In, Count),
        close(In)).

restore_(M, In, Count) :-
    fast_read(In, Header),
    (   ( Header == snapshot(2) ; Header == snapshot(1) )
    ->  true
    ;   domain_error(octopus_snapshot, Header)
    ),
    fast_read(In, Term),
    restore_terms(Term, M, In, 0, Count).

restore_terms(recs(Recs), M, In, N0, N) :- !,
    restore_recs(Recs, M, N0, N1),
    fast_read(In, Term),
    restore_terms(Term, M, In, N1, N).
restore_terms(rec(Name, Rev, Dict), M, In, N0, N) :- !,
    name_string(Name, S),
    assertz(M:rec(S, Rev, Dict)),
    N1 is N0 + 1,
    fast_read(In, Term),
    restore_terms(Term, M, In, N1, N).
restore_terms(seq(Base, Next), M, In, N0, N) :- !,
    assertz(M:seq(Base, Next)),
    fast_read(In, Term),
    restore_terms(Term, M, In, N0, N).
restore_terms(end(N), _, _, N0, N) :- !,
    (   N == N0
    ->  true
    ;   domain_error(octopus_snapshot_count(N0), N)
    ).
restore_terms(Term, _, _, _, _) :-
    domain_error(octopus_snapshot_term, Term).

restore_recs([], _, N, N).
restore_recs([rec(Name, Rev, Dict)|Recs], M, N0, N) :-
    name_string(Name, S),
    assertz(M:rec(S, Rev, Dict)),
    N1 is N0 + 1,
    restore_recs(Recs, M, N1, N).
