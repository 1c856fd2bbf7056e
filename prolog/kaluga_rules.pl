/*  Kaluga's rules over live records (docs/rules.md, docs/kaluga.md).

    Loaded with engine.rules() (so each predicate is a declared relation that can be
    watched, also over the wire), after device_db.pl and kaluga.pl. They read the
    records Kaluga and its starter write:

      - driver.<binary>.<k> { device: <device record>, core: <n> }: an instance,
        started for its device (the device as an identifier, so it joins with the
        record's name);
      - kaluga.assign.<device record> { assigned_device: <device>, instance: <instance> }:
        a device Kaluga assigned to an instance that was already running (a driver
        that is not multi-instance serves every device it matches).

    Every rule is in the rule family: joins, negation and comparisons over record/1,
    attr/3 and builtins, so Kaluga's watches are kept current change by change.
*/

%!  managed_device(?Dev) is nondet.
%
%   A device record Kaluga finds drivers for.

managed_device(Dev) :- record(Dev), sub_atom(Dev, 0, _, _, 'hw.pci.device.').
managed_device(Dev) :- record(Dev), sub_atom(Dev, 0, _, _, 'hw.usb.device.').

%!  serves(?Instance, ?Dev) is nondet.
%
%   Driver instance Instance serves device Dev: it was started for it, or Dev was
%   assigned to it.

serves(Instance, Dev) :-
    attr(Instance, device, Dev),
    sub_atom(Instance, 0, _, _, 'driver.').
serves(Instance, Dev) :-
    attr(A, assigned_device, Dev),
    attr(A, instance, Instance),
    record(Instance).

%!  unbound_device(?Dev) is nondet.
%
%   A managed device no driver instance serves: not handled yet, or no driver in the
%   knowledge base matches it. The boot demo watches this relation.

unbound_device(Dev) :-
    managed_device(Dev),
    \+ serves(_, Dev).

%!  stale_driver(?Instance) is nondet.
%
%   A driver instance none of whose devices is left (its device was removed, and so
%   was every device assigned to it): Kaluga stops it.

stale_driver(Instance) :-
    attr(Instance, device, _),
    sub_atom(Instance, 0, _, _, 'driver.'),
    \+ live_device(Instance).

live_device(Instance) :-
    serves(Instance, Dev),
    record(Dev).
