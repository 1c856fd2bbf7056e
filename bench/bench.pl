:- module(octopus_bench,
          [ time_get/4,   % +Store, +Name, +N, -SecondsPerCall
            time_first/5,         % +Store, +NamePattern, +Constraints, +N, -SecondsPerCall
            noop/3,               % +A, +B, -Reply
            noop/4,               % +A, +B, +C, -Reply
            const_record/3,       % +Store, +Name, -Reply
            const_match/4,        % +Store, +NamePattern, +Constraints, -Reply
            time_set/5,           % +Store, +Items, +Keys, +Rev0, -SecondsPerCall
            noop/8                % +A, ..., +G, -Reply
          ]).

/** <module> Helpers for bench/: time store predicates inside Prolog, and no-op
predicates that measure janus call and conversion costs on their own. */

:- use_module('../prolog/store').

%!  time_get(+Store, +Name, +N, -PerCall) is det.
time_get(M, Name, N, PerCall) :-
    get_time(T0),
    forall(between(1, N, _), store_get(M, Name, _)),
    get_time(T1),
    PerCall is (T1 - T0) / N.

%!  time_first(+Store, +NamePattern, +Constraints, +N, -PerCall) is det.
time_first(M, NP, Cs, N, PerCall) :-
    get_time(T0),
    forall(between(1, N, _), store_first(M, NP, Cs, _)),
    get_time(T1),
    PerCall is (T1 - T0) / N.

noop(_, _, @(true)).
noop(_, _, _, @(true)).
noop(_, _, _, _, _, _, _, @(true)).

%!  time_set(+Store, +Items, +Keys, +Rev0, -PerCall) is det.
%   Items are [Name, Attrs] lists: each is stored by a plain store_set/8 (the i-th at
%   revision Rev0 + i), as the adapter calls it; PerCall is the thread's CPU seconds
%   per call.
time_set(M, Items, Keys, Rev0, PerCall) :-
    length(Items, N),
    statistics(cputime, T0),
    set_items(Items, M, Keys, Rev0),
    statistics(cputime, T1),
    PerCall is (T1 - T0) / N.

set_items([], _, _, _).
set_items([[Name, Attrs]|Items], M, Keys, Rev0) :-
    Rev is Rev0 + 1,
    store_set(M, Name, Attrs, [], @(false), Rev, Keys, _),
    set_items(Items, M, Keys, Rev).

%!  const_record(+Store, +Name, -Reply) is det.
%   A reply shaped like store_get's, with no lookup.
const_record(_, _, [7, _{bus: 3, device: 1, vendor: 32902, device_id: 4110, class: "C"}]).

%!  const_match(+Store, +NamePattern, +Constraints, -Reply) is det.
%   A reply shaped like store_first's, with no lookup.
const_match(_, _, _, ['hw.pci.device.7', 7,
                      _{bus: 3, device: 1, vendor: 32902, device_id: 4110, class: "C"}]).
