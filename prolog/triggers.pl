:- module(octopus_triggers,
          [ trigger_add/5,            % +Store, +Id, +NamePattern, +Constraints, -Reply
            trigger_remove/3,         % +Store, +Id, -Reply
            trigger_clear/2,          % +Store, -Reply
            trigger_match/5           % +Store, +Ids, +Name, +Attrs, -Reply
          ]).

/** <module> Installed trigger and subscription queries, and matching a change to them

Triggers and subscriptions share one table per store module: trig(Id, Query), Query a
prepared query (compiled regexes included). The Python side keeps the roaring-bitmap
index that narrows a change down to candidate ids; this module does the full match
of those candidates against the changed record.
*/

:- use_module(library(apply)).
:- use_module(library(error)).
:- use_module(match).
:- use_module(reply).

%!  trigger_add(+Store, +Id, +NamePattern, +Constraints, -Reply) is det.
%
%   Prepare (validate, compile regexes) and remember a query. Reply is @(true) or an
%   error term.

trigger_add(M, Id, NP0, Cs0, Reply) :-
    guarded(( prepare_trigger_query(NP0, Cs0, Q),
              (   current_predicate(M:trig/2) -> true ; dynamic(M:trig/2) ),
              assertz(M:trig(Id, Q))
            ),
            @(true), prolog, Reply).

%!  trigger_remove(+Store, +Id, -Reply) is det.

trigger_remove(M, Id, Reply) :-
    (   current_predicate(M:trig/2), retract(M:trig(Id, _))
    ->  Reply = @(true)
    ;   Reply = @(false)
    ).

%!  trigger_clear(+Store, -Reply) is det.

trigger_clear(M, @(true)) :-
    (   current_predicate(M:trig/2) -> retractall(M:trig(_, _)) ; true ).

%!  trigger_match(+Store, +Ids, +Name, +Attrs, -Reply) is det.
%
%   Reply is the sublist of Ids whose query matches the record Name with Attrs (a
%   list of Key-Value in janus encoding). A regex that exceeds its match limit
%   counts as no match: a change is never refused because of a trigger.

trigger_match(M, Ids, Name, Attrs, Matched) :-
    maplist(import_pair, Attrs, Pairs),
    dict_pairs(Dict, _, Pairs),
    include(id_matches(M, Name, Dict), Ids, Matched).

import_pair(K-V0, K-V) :-
    import_value(V0, V).

id_matches(M, Name, Dict, Id) :-
    M:trig(Id, Q),
    catch(record_matches(Q, Name, Dict), error(resource_error(_), _), fail).
