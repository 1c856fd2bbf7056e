:- module(octopus_bench, [ time_goal/4, noop/3, const_record/3 ]).

/** <module> Helpers for bench/: time store predicates inside Prolog, and no-op
predicates to measure janus call and conversion costs on their own. */

:- use_module('../prolog/store').

:- meta_predicate time_goal(0, +, -, -).

%!  time_goal(:Goal, +N, -SecondsPerCall, -Reply) is det.
%
%   Run Goal N times (each once, its bindings undone), wall time per call.
time_goal(Goal, N, PerCall, @(true)) :-
    get_time(T0),
    forall(between(1, N, _), ignore(Goal)),
    get_time(T1),
    PerCall is (T1 - T0) / N.

%!  noop(+A, +B, -Reply) is det.
noop(_, _, @(true)).

%!  const_record(+Store, +Name, -Reply) is det.
%
%   Reply has the shape of store_get_by_name's reply, without looking anything up.
const_record(_, _, 7-_{bus: 3, device: 1, vendor: 32902, device_id: 4110, class: "C"}).
