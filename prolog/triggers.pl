:- module(octopus_triggers,
          [ trigger_add/5,            % +Store, +Id, +NamePattern, +Constraints, -Reply
            trigger_remove/3,         % +Store, +Id, -Reply
            trigger_match/5           % +Store, +Ids, +Name, +Attrs, -Matched
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
%   Prepare (validate, compile regexes) and remember a query. Reply is @(true).
%   Raises a query error (and remembers nothing) for an invalid query.

trigger_add(M, Id, NP0, Cs0, @(true)) :-
    must_be(integer, Id),
    prepare_query(NP0, Cs0, Q),
    assertz(M:trig(Id, Q)).

%!  trigger_remove(+Store, +Id, -Reply) is det.
%
%   Reply is @(true) if the query was there, else @(false).

trigger_remove(M, Id, Reply) :-
    (   retract(M:trig(Id, _))
    ->  Reply = @(true)
    ;   Reply = @(false)
    ).

%!  trigger_match(+Store, +Ids, +Name, +Attrs, -Matched) is det.
%
%   Matched is the sublist of Ids whose query matches the record Name with Attrs (a
%   list of Key-Value as Python passes them). A regex that exceeds its match limit
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
