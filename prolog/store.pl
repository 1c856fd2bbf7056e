:- module(octopus_store,
          [ store_create/2,           % +Store, -Reply
            store_destroy/2,          % +Store, -Reply
            store_get/3,              % +Store, +Name, -Reply
            store_first/4,            % +Store, +NamePattern, +Constraints, -Reply
            store_names/4,            % +Store, +NamePattern, +Constraints, -Reply
            store_all/4,              % +Store, +NamePattern, +Constraints, -Reply
            store_exists/4,           % +Store, +NamePattern, +Constraints, -Reply
            store_set/7,              % +Store, +Name, +Attrs, +Constraints, +Sequential, +Rev, -Reply
            store_delete/4,           % +Store, +Name, +Constraints, -Reply
            store_load/4,             % +Store, +Records, +Rev0, -Reply
            store_count/2,            % +Store, -Count
            store_keys/2,             % +Store, -Count
            store_warm/2,             % +Store, -Reply
            store_plan_set/5,         % +Store, +Name, +Constraints, +Sequential, -Reply
            store_match/4,            % +Store, +Name, +Constraints, -Reply
            store_put/6,              % +Store, +Name, +Attrs, +Counter, +Rev, -Reply
            store_replay/3,           % +Store, +Ops, -Reply
            store_snapshot/3,         % +Store, +File, -Reply
            store_restore/3           % +Store, +File, -Reply
          ]).

/** <module> The Octopus record store

The records of one engine. Every engine owns one store: a private module Store (named
by the Python side from a counter, never from user data) holding

  - rec(Name, Rev, Dict):      one fact per record, first-argument indexed on Name;
                               Rev is the revision of its last change, Dict its
                               attributes in the stored form of octopus_match;
  - key_index(Key, Table):     the attribute index is one dynamic predicate per
                               attribute key, Table(Hash, Name), with one fact per
                               record having the key; Hash = index_hash(Value).
                               Table names come from a counter ('attr$17'), never
                               from user data. A lookup by key scans exactly the
                               records having the key; a lookup by key and value
                               uses the first-argument index of that key's table.
                               (One shared attr(Key, Hash, Name) table was tried
                               first: a heavy value such as class 'C' on most
                               records then shares its hash bucket with rare
                               values of other keys, and a lookup that should
                               visit 10 clauses visited 66,000.) A table whose last
                               record goes is abolished after the transaction, so
                               keys that no record has any more cost nothing, and
                               its name waits in free_table(Table) for the next new
                               key: SWI-Prolog never frees a predicate, even
                               abolished, so a fresh name per key would grow
                               memory with every distinct key ever stored;
  - seq(Base, Next):           per-base-name counters of sequential sets;
  - trig(Id, Query):           installed trigger queries (prolog/triggers.pl).

Revisions are allocated by the caller (which serialises all calls) and passed in.

A durable engine writes every change to its journal before the store applies it, so
it needs the outcome of a conditional or sequential set before the set: it asks
store_plan_set/5 (or store_match/4 for a delete), which decides without changing
anything, then applies the decided change with store_put/6 (or store_delete/4
without constraints). The caller holds its lock between the two calls, so nothing
can change in between. store_snapshot/3 copies the records and counters from a
snapshot/1 view while other threads go on writing; store_restore/3 loads such a
copy into an empty store, and store_replay/3 applies journal entries on top of it.
Every write of records and their index entries runs inside transaction/1, so a
failure half-way leaves nothing behind.

Replies are plain data that janus converts without tuples: lists, dicts, atoms,
numbers and @(none)/@(true)/@(false) (octopus/adapter.py reads them). Errors are
raised as error(Formal, Context) terms (prolog/errors.pl).
*/

:- use_module(library(error)).
:- use_module(library(apply)).
:- use_module(library(lists)).
:- use_module(library(pairs)).
:- use_module(match).
:- use_module(errors).

%!  store_create(+Store, -Reply) is det.
%!  store_destroy(+Store, -Reply) is det.
%
%   Reply is @(true): every predicate called from Python returns a reply.

store_create(M, @(true)) :-
    must_be(atom, M),
    dynamic([M:rec/3, M:key_index/2, M:seq/2, M:trig/2, M:empty_table/1,
             M:free_table/1]).

store_destroy(M, @(true)) :-
    must_be(atom, M),
    retractall(M:rec(_, _, _)),
    forall(M:key_index(_, Table), abolish(M:Table/2)),
    retractall(M:key_index(_, _)),
    retractall(M:seq(_, _)),
    retractall(M:trig(_, _)),
    retractall(M:empty_table(_)),
    retractall(M:free_table(_)).

%   key_table(+Store, +Key, -Table) is semidet.
%   key_table_create(+Store, +Key, -Table) is det.
%   indexed(+Store, +Table, ?Hash, ?Name) is nondet.
%
%   The index table of Key; calling one of its facts.

key_table(M, Key, Table) :-
    M:key_index(Key, Table).

key_table_create(M, Key, Table) :-
    (   M:key_index(Key, Table0)
    ->  Table = Table0
    ;   (   retract(M:free_table(Table1))
        ->  Table = Table1          % SWI-Prolog never frees a predicate: reuse the name
        ;   flag(octopus_key_table, N, N + 1),
            atom_concat('attr$', N, Table)
        ),
        dynamic(M:Table/2),
        assertz(M:key_index(Key, Table))
    ).

indexed(M, Table, Hash, Name) :-
    Goal =.. [Table, Hash, Name],
    call(M:Goal).

%!  store_get(+Store, +Name, -Reply) is det.
%
%   The record called Name: Reply is [Rev, Dict], or @(none).

store_get(M, Name, Reply) :-
    (   M:rec(Name, Rev, Dict)
    ->  Reply = [Rev, Dict]
    ;   Reply = @(none)
    ).

%!  store_first(+Store, +NamePattern, +Constraints, -Reply) is det.
%
%   Reply is @(none) when nothing matches, [Name, Rev, Dict] when exactly one record
%   does, and otherwise _{names: Names}, the matching names (the caller picks the
%   first in natural order, which is cheaper in Python than in Prolog, and gets it).

store_first(M, NP0, Cs0, Reply) :-
    prepare_query(NP0, Cs0, Q),
    with_regex_budget(findall(Name, solution(M, Q, Name, _, _), Names)),
    (   Names == []
    ->  Reply = @(none)
    ;   Names = [Only]
    ->  M:rec(Only, Rev, Dict),
        Reply = [Only, Rev, Dict]
    ;   Reply = _{names: Names}
    ).

%!  store_names(+Store, +NamePattern, +Constraints, -Names) is det.
%
%   The matching names, unordered (the caller sorts).

store_names(M, NP0, Cs0, Names) :-
    prepare_query(NP0, Cs0, Q),
    with_regex_budget(findall(Name, solution(M, Q, Name, _, _), Names)).

%!  store_all(+Store, +NamePattern, +Constraints, -Records) is det.
%
%   The matching records as [Name, Rev, Dict] lists, unordered (the caller sorts).

store_all(M, NP0, Cs0, Records) :-
    prepare_query(NP0, Cs0, Q),
    with_regex_budget(findall([Name, Rev, Dict], solution(M, Q, Name, Rev, Dict), Records)).

%!  store_exists(+Store, +NamePattern, +Constraints, -Reply) is det.
%
%   Reply is @(true) or @(false).

store_exists(M, NP0, Cs0, Reply) :-
    prepare_query(NP0, Cs0, Q),
    (   with_regex_budget(solution(M, Q, _, _, _))
    ->  Reply = @(true)
    ;   Reply = @(false)
    ).

%   solution(+Store, +Query, -Name, -Rev, -Dict) is nondet.
%
%   Enumerate the matching records, visiting only candidates from the attribute
%   index when the query constrains attributes.

solution(M, q(exact(Name), Cs), Name, Rev, Dict) :- !,
    M:rec(Name, Rev, Dict),
    constraints_hold(Cs, Dict).
solution(M, q(NP, Cs), Name, Rev, Dict) :-
    candidate(M, Cs, Name),
    M:rec(Name, Rev, Dict),
    name_ok(NP, Name),
    constraints_hold(Cs, Dict).

name_ok(any, _) :- !.
name_ok(NP, Name) :- record_matches(q(NP, []), Name, _{}).

candidate(M, Cs, Name) :-
    best_equality(M, Cs, Table, Hash), !,
    Table \== [],
    indexed(M, Table, Hash, Name).
candidate(M, [c(Key, _, _)|_], Name) :- !,
    key_table(M, Key, Table),
    indexed(M, Table, _, Name).
candidate(M, [], Name) :-
    M:rec(Name, _, _).

%   best_equality(+Store, +Constraints, -Table, -Hash) is semidet.
%
%   The equality constraint with the fewest index entries (counted up to a small
%   bound of 32, so the choice costs little even when a value is very common). A key
%   without a table means no record has it: Table is then [] (no candidates).

best_equality(M, Cs, Table, Hash) :-
    findall(T-H,
            ( member(c(K, eq, V), Cs),
              ( key_table(M, K, T) -> true ; T = [] ),
              index_hash(V, H)
            ),
            Eqs),
    (   Eqs = [Table-Hash]
    ->  true
    ;   Eqs = [_|_],
        findall(N-(T-H),
                ( member(T-H, Eqs),
                  (   T == []
                  ->  N = 0
                  ;   aggregate_all(count, limit(32, indexed(M, T, H, _)), N)
                  )
                ),
                Counted),
        keysort(Counted, [_-(Table-Hash)|_])
    ).

%!  store_set(+Store, +Name, +Attrs, +Constraints, +Sequential, +Rev, -Reply) is det.
%
%   Replace (or create) record Name with Attrs (a list of Key-Value), provided the
%   stored record satisfies Constraints (a non-empty list needs a stored record).
%   With Sequential = @(true), Name is a base name and the record is stored as
%   Base<N> for the next free N of that base. Reply is the final name, or @(false)
%   when the conditions do not hold (nothing changed then).

store_set(M, Name, Attrs, Cs0, Seq, Rev, Reply) :-
    prepare_constraints(Cs0, Cs),
    maplist(import_pair, Attrs, Pairs),
    (   transaction(set_(M, Name, Pairs, Cs, Seq, Rev, Final))
    ->  Reply = Final,
        abolish_empty_tables(M)
    ;   Reply = @(false)              % the conditions failed: the transaction undid all
    ).

set_(M, Name0, Pairs, Cs, Seq, Rev, Name) :-
    (   Seq == @(true)
    ->  next_sequential_name(M, Name0, Name)
    ;   Name = Name0
    ),
    check_name(Name),
    (   Cs == []
    ->  true
    ;   M:rec(Name, _, Old),
        constraints_hold(Cs, Old)
    ),
    put_record(M, Name, Rev, Pairs).

import_pair(K-V0, K-V) :-
    (   atom(K) -> true ; must_be(atom, K) ),
    import_value(V0, V).

next_sequential_name(M, Base, Name) :-
    (   retract(M:seq(Base, N0)) -> true ; N0 = 0 ),
    free_name(M, Base, N0, N, Name),
    N1 is N + 1,
    assertz(M:seq(Base, N1)).

free_name(M, Base, N0, N, Name) :-
    atom_concat(Base, N0, Name0),
    (   M:rec(Name0, _, _)
    ->  N1 is N0 + 1,
        free_name(M, Base, N1, N, Name)
    ;   N = N0,
        Name = Name0
    ).

put_record(M, Name, Rev, Pairs) :-
    dict_pairs(Dict, _, Pairs),
    remove_record(M, Name),
    assertz(M:rec(Name, Rev, Dict)),
    index_pairs(Pairs, M, Name).

index_pairs([], _, _).
index_pairs([K-V|Pairs], M, Name) :-
    key_table_create(M, K, Table),
    index_hash(V, H),
    Fact =.. [Table, H, Name],
    assertz(M:Fact),
    index_pairs(Pairs, M, Name).

%   remove_record(+Store, +Name) is det.
%
%   Remove the record and its index entries, if there is one. Each key table it
%   leaves is noted in empty_table/1 as possibly empty; abolish_empty_tables/1
%   checks each noted table once after the transaction, unlists and abolishes those
%   left without entries (abolish/1 is not transactional) and keeps their names in
%   free_table/1 for reuse by key_table_create/3. Checking here, once per
%   removed entry, cost a scan over the entries removed before it and not yet
%   reclaimed: replacing 5,000 records in one transaction took 219 us each.

remove_record(M, Name) :-
    (   retract(M:rec(Name, _, Old))
    ->  forall(get_dict(K, Old, V), unindex(M, K, V, Name))
    ;   true
    ).

unindex(M, K, V, Name) :-
    key_table(M, K, Table),
    index_hash(V, H),
    Fact =.. [Table, H, Name],
    retract(M:Fact),
    (   M:empty_table(Table)
    ->  true
    ;   assertz(M:empty_table(Table))
    ).

abolish_empty_tables(M) :-
    forall(retract(M:empty_table(Table)),
           (   indexed(M, Table, _, _)
           ->  true                    % still has entries (or taken again)
           ;   retract(M:key_index(_, Table))
           ->  abolish(M:Table/2),
               assertz(M:free_table(Table))
           ;   true
           )).

%!  store_delete(+Store, +Name, +Constraints, -Reply) is det.
%
%   Delete record Name if it satisfies Constraints. Reply is [OldRev, OldDict], or
%   @(none) when there was no such record (nothing changes then).

store_delete(M, Name, Cs0, Reply) :-
    prepare_constraints(Cs0, Cs),
    transaction(delete_(M, Name, Cs, Reply)),
    abolish_empty_tables(M).

delete_(M, Name, Cs, Reply) :-
    (   M:rec(Name, Rev, Dict),
        constraints_hold(Cs, Dict)
    ->  remove_record(M, Name),
        Reply = [Rev, Dict]
    ;   Reply = @(none)
    ).

%!  store_load(+Store, +Records, +Rev0, -Reply) is det.
%
%   Bulk replace: Records is a list of -(Name, Attrs); the i-th (from 1) gets
%   revision Rev0+i. All or nothing. Reply is the number of records stored.

store_load(M, Records, Rev0, Count) :-
    transaction(foldl(load_one(M), Records, Rev0, Rev)),
    abolish_empty_tables(M),
    Count is Rev - Rev0.

load_one(M, -(Name, Attrs), Rev0, Rev) :-
    (   atom(Name) -> true ; must_be(atom, Name) ),
    maplist(import_pair, Attrs, Pairs),
    Rev is Rev0 + 1,
    put_record(M, Name, Rev, Pairs).

%!  store_count(+Store, -Count) is det.
%
%   The number of records.

store_count(M, Count) :-
    predicate_property(M:rec(_, _, _), number_of_clauses(Count)), !.
store_count(_, 0).

%!  store_keys(+Store, -Count) is det.
%
%   The number of attribute keys that have an index table.

store_keys(M, Count) :-
    aggregate_all(count, M:key_index(_, _), Count).

%!  store_warm(+Store, -Reply) is det.
%
%   Build the JIT clause indexes now (after a bulk load) instead of on the first
%   query that needs them.

store_warm(M, @(true)) :-
    ignore(M:rec('$octopus_warm', _, _)),
    forall(M:key_index(_, Table),
           ( ignore(indexed(M, Table, 0, _)),
             ignore(indexed(M, Table, _, '$octopus_warm'))
           )).


%!  store_plan_set(+Store, +Name, +Constraints, +Sequential, -Reply) is det.
%
%   What store_set/7 would do, without doing it: Reply is @(false) when the
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
    ;   Final = Name,
        Next = @(none)
    ),
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
    (   M:rec(Name, Rev, Dict),
        constraints_hold(Cs, Dict)
    ->  Reply = [Rev, Dict]
    ;   Reply = @(none)
    ).

%!  store_put(+Store, +Name, +Attrs, +Counter, +Rev, -Reply) is det.
%
%   Store record Name with Attrs at Rev, unconditionally. Counter is @(none) or
%   [Base, Next]: the sequence counter of Base becomes at least Next (counters
%   never go back, so applying a journal entry twice changes nothing more).

store_put(M, Name, Attrs, Counter, Rev, @(true)) :-
    (   atom(Name) -> true ; must_be(atom, Name) ),
    maplist(import_pair, Attrs, Pairs),
    transaction(put_(M, Name, Pairs, Counter, Rev)),
    abolish_empty_tables(M).

put_(M, Name, Pairs, Counter, Rev) :-
    advance_counter(Counter, M),
    put_record(M, Name, Rev, Pairs).

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

%!  store_replay(+Store, +Ops, -Reply) is det.
%
%   Apply journal entries in order: each is [s, Rev, Name, Attrs, Counter]
%   (store_put/6) or [d, Name] (delete if present). Every entry is idempotent:
%   applied on top of a snapshot that already holds some of them, the result is the
%   same. Not a transaction (for recovery only: a store whose replay failed is thrown
%   away). Reply is the number of entries.

store_replay(M, Ops, Count) :-
    must_be(list, Ops),
    maplist(replay_op(M), Ops),
    abolish_empty_tables(M),
    length(Ops, Count).

replay_op(M, [s, Rev, Name, Attrs, Counter]) :- !,
    must_be(atom, Name),
    maplist(import_pair, Attrs, Pairs),
    put_(M, Name, Pairs, Counter, Rev).
replay_op(M, [d, Name]) :- !,
    must_be(atom, Name),
    remove_record(M, Name).
replay_op(_, Op) :-
    domain_error(octopus_journal_op, Op).

%!  store_snapshot(+Store, +File, -Reply) is det.
%
%   Write the records and sequence counters to File (created or truncated) from a
%   snapshot/1 view: a consistent state, while other threads go on changing the
%   store. The file holds fast_write/2 terms: snapshot(1), then rec(Name, Rev, Dict)
%   per record, seq(Base, Next) per counter, and end(Records). Reply is the number
%   of records written.

store_snapshot(M, File, Count) :-
    must_be(atom, M),
    setup_call_cleanup(
        open(File, write, Out, [type(binary)]),
        snapshot(write_snapshot(M, Out, Count)),
        close(Out)).

write_snapshot(M, Out, Count) :-
    fast_write(Out, snapshot(1)),
    State = count(0),
    forall(M:rec(Name, Rev, Dict),
           ( fast_write(Out, rec(Name, Rev, Dict)),
             arg(1, State, N0), N is N0 + 1, nb_setarg(1, State, N)
           )),
    forall(M:seq(Base, Next), fast_write(Out, seq(Base, Next))),
    arg(1, State, Count),
    fast_write(Out, end(Count)).

%!  store_restore(+Store, +File, -Reply) is det.
%
%   Load a file written by store_snapshot/3 into an empty store: records with
%   their index entries and counters. Reads up to the end/1 term (what follows
%   belongs to the caller). Reply is the number of records. Not a transaction
%   (one of a million records takes twice as long): a store whose restore failed
%   is thrown away by the caller, never used.

store_restore(M, File, Count) :-
    must_be(atom, M),
    (   M:rec(_, _, _)
    ->  permission_error(restore, octopus_store, M)
    ;   true
    ),
    setup_call_cleanup(
        open(File, read, In, [type(binary)]),
        restore_(M, In, Count),
        close(In)),
    abolish_empty_tables(M).

restore_(M, In, Count) :-
    fast_read(In, Header),
    (   Header == snapshot(1)
    ->  true
    ;   domain_error(octopus_snapshot, Header)
    ),
    fast_read(In, Term),
    restore_terms(Term, M, In, [], [], 0, Count).

% Records of one shape (the same keys) follow each other; their key tables are
% looked up once per shape, not once per value.
restore_terms(rec(Name, Rev, Dict), M, In, Keys0, Tables0, N0, N) :- !,
    assertz(M:rec(Name, Rev, Dict)),
    dict_pairs(Dict, _, Pairs),
    pairs_keys_values(Pairs, Keys, Values),
    (   Keys == Keys0
    ->  Tables = Tables0
    ;   maplist(key_table_create(M), Keys, Tables)
    ),
    restore_index(Tables, Values, M, Name),
    N1 is N0 + 1,
    fast_read(In, Term),
    restore_terms(Term, M, In, Keys, Tables, N1, N).
restore_terms(seq(Base, Next), M, In, Keys, Tables, N0, N) :- !,
    assertz(M:seq(Base, Next)),
    fast_read(In, Term),
    restore_terms(Term, M, In, Keys, Tables, N0, N).
restore_terms(end(N), _, _, _, _, N0, N) :- !,
    (   N == N0
    ->  true
    ;   domain_error(octopus_snapshot_count(N0), N)
    ).
restore_terms(Term, _, _, _, _, _, _) :-
    domain_error(octopus_snapshot_term, Term).

% No record is replaced here, so nothing is unindexed: one assert per value.
restore_index([], [], _, _).
restore_index([Table|Tables], [V|Vs], M, Name) :-
    index_hash(V, H),
    Fact =.. [Table, H, Name],
    assertz(M:Fact),
    restore_index(Tables, Vs, M, Name).
