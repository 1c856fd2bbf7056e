:- module(octopus_triggers,
          [ trigger_add/5,            % +Store, +Id, +NamePattern, +Constraints, -Reply
            trigger_remove/3,         % +Store, +Id, -Reply
            trigger_match/5           % +Store, +Ids, +Name, +Attrs, -Reply
          ]).

/** <module> The Prolog side of the trigger registry

Installed trigger and subscription queries live in the store module as trig(Id, Query),
Query a prepared query (compiled regexes included); store_destroy/2 clears them. The
registry in octopus/registry.py keeps the roaring-bitmap index that narrows a change
down to candidate ids; this module does the full match of those candidates against
the changed record. Each write is one assert or retract, atomic by itself.
*/

:- use_module(library(apply)).
:- use_module(library(error)).
:- use_module(match).

%!  trigger_add(+Store, +Id, +NamePattern, +Constraints, -Reply) is det.
%
%   Prepare (validate, compile regexes, probe their cost: prepare_trigger_query/3)
%   and remember a query. Reply is @(true).
%   Raises a query error (and remembers nothing) for an invalid query.

trigger_add(M, Id, NP0, Cs0, @(true)) :-
    must_be(integer, Id),
    prepare_trigger_query(NP0, Cs0, Q),
    assertz(M:trig(Id, Q)).

%!  trigger_remove(+Store, +Id, -Reply) is det.
%
%   Reply is @(true) if the query was there, else @(false).

trigger_remove(M, Id, Reply) :-
    (   retract(M:trig(Id, _))
    ->  Reply = @(true)
    ;   Reply = @(false)
    ).

%!  trigger_match(+Store, +Ids, +Name, +Attrs, -Reply) is det.
%
%   Reply is [Matched, Costly]: Matched the sublist of Ids whose query matches the
%   record Name with Attrs (a list of Key-Value as Python passes them), Costly those
%   whose match took more than trigger_cost_limit/1 seconds of CPU. A query whose
%   regex exceeds its limits (subject length, match steps) does not match the change: a
%   change is never refused because of a trigger. A costly one does not match either,
%   and the registry removes it, with its REMOVED event, so that no query taxes every
%   later write (a pattern that passed the probes at install can still be slow on a
%   crafted value).

trigger_match(M, Ids, Name, Attrs, [Matched, Costly]) :-
    maplist(import_pair, Attrs, Pairs),
    dict_pairs(Dict, _, Pairs),
    trigger_cost_limit(Limit),
    match_ids(Ids, M, Name, Dict, Limit, Matched, Costly).

%!  trigger_cost_limit(-Seconds) is det.
%
%   CPU time one trigger query may take on one change. Ordinary queries take
%   microseconds, the worst bounded search about 20 ms on an idle machine; a regex
%   crafted to be slow on a crafted value took 10-15 ms per change.

trigger_cost_limit(0.005).

match_ids([], _, _, _, _, [], []).
match_ids([Id|Ids], M, Name, Dict, Limit, Matched, Costly) :-
    timed_match(M, Name, Dict, Id, Hit, Time),
    (   Time > Limit,
        % Once more, so that a garbage collection that happened to run during the
        % match does not cost an innocent trigger its life.
        timed_match(M, Name, Dict, Id, _, Again),
        Again > Limit
    ->  Costly = [Id|Costly1],
        Matched = Matched1
    ;   Costly = Costly1,
        (   Hit == true
        ->  Matched = [Id|Matched1]
        ;   Matched = Matched1
        )
    ),
    match_ids(Ids, M, Name, Dict, Limit, Matched1, Costly1).

timed_match(M, Name, Dict, Id, Hit, Time) :-
    statistics(cputime, T0),
    (   id_matches(M, Name, Dict, Id)
    ->  Hit = true
    ;   Hit = false
    ),
    statistics(cputime, T1),
    Time is T1 - T0.

import_pair(K-V0, K-V) :-
    import_value(V0, V).

id_matches(M, Name, Dict, Id) :-
    M:trig(Id, Q),
    catch(record_matches(Q, Name, Dict), error(resource_error(_), _), fail).
