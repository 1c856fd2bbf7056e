/*  Kaluga's questions to the knowledge base: which driver for this device?

    A knowledge-base file, consulted after device_db.pl. Every find_* predicate
    answers with one term

        driver(Binary, Module, CoreHint, CoreOffset, MultiInstance, Interrupts, Priority)

    for the highest-priority match (ties: the first in database order), and fails
    when nothing matches, which means the device is ignored.
*/

:- dynamic pci_vendor_name/2, pci_device_name/3, pci_class_name/3.

%!  find_pci_driver(+Card, -Driver) is semidet.
%!  find_pci_driver(?Platform, +Card, -Driver) is semidet.
%
%   Card is pci(Vendor, Device, Function, SubVendor, SubDevice, Class, Subclass,
%   ProgIf); unknown fields may be unbound or -1. Without Platform, drivers of every
%   platform compete on priority.

find_pci_driver(Card, Driver) :-
    find_pci_driver(_, Card, Driver).

find_pci_driver(Platform, Card, Driver) :-
    findall(Prio-Binary,
            ( pci_driver(Binary, Match, Prio),
              pci_match(Match, Card),
              driver(Binary, Platform, _, _, _, _, _)
            ),
            Candidates),
    best(Candidates, Prio, Binary),
    driver_term(Binary, Platform, Prio, Driver).

%!  pci_match(+Match, +Card) is semidet.

pci_match(card(V, D), pci(V1, D1, _, _, _, _, _, _)) :-
    V == V1, D == D1.
pci_match(card(V, D, SV, SD), pci(V1, D1, _, SV1, SD1, _, _, _)) :-
    V == V1, D == D1, SV == SV1, SD == SD1.
pci_match(card_range(V, Lo, Hi), pci(V1, D1, _, _, _, _, _, _)) :-
    V == V1, integer(D1), D1 >= Lo, D1 =< Hi.
pci_match(class(C, S, P), pci(_, _, _, _, _, C1, S1, P1)) :-
    field(C, C1), field(S, S1), field(P, P1).
pci_match(vendor_class(V, C, S), pci(V1, _, _, _, _, C1, S1, _)) :-
    V == V1, field(C, C1), field(S, S1).

%   field(?Pattern, +Value): a rule's field matches when it is a wildcard or equal.

field(Pattern, Value) :-
    (   var(Pattern)
    ->  true
    ;   Pattern == Value
    ).

%!  find_usb_driver(?Platform, +Device, -Driver) is semidet.
%
%   Device is usb(Class, Subclass, Protocol, Vendor, Product).

find_usb_driver(Platform, usb(C, S, P, V, D), Driver) :-
    findall(Prio-Binary,
            ( usb_driver(Binary, usb(C0, S0, P0, V0, D0), Prio),
              field(C0, C), field(S0, S), field(P0, P), field(V0, V), field(D0, D),
              driver(Binary, Platform, _, _, _, _, _)
            ),
            Candidates),
    best(Candidates, Prio, Binary),
    driver_term(Binary, Platform, Prio, Driver).

%!  find_device_driver(?Platform, +Kind, -Driver) is semidet.
%
%   Kind is acpi, pci_root_bridge or cpu(Type).

find_device_driver(Platform, Kind, Driver) :-
    device_driver(Kind, Binary),
    driver(Binary, Platform, _, _, _, _, _),
    !,
    driver_term(Binary, Platform, 0, Driver).

best(Candidates, Prio, Binary) :-
    Candidates \== [],
    sort(1, @>=, Candidates, [Prio-Binary|_]).

driver_term(Binary, Platform, Prio,
            driver(Binary, Module, Hint, Offset, Multi, Interrupts, Prio)) :-
    driver(Binary, Platform, Module, Hint, Offset, Multi, Interrupts),
    !.

%!  pci_label(+Vendor, +Device, -Label) is det.
%!  pci_label(+Vendor, +Device, +Class, +Subclass, -Label) is det.
%
%   A human name for a PCI function from the pci.ids facts (pci_vendor_name/2,
%   pci_device_name/3, pci_class_name/3): vendor and device name; for a device
%   pci.ids does not know, vendor and class name; "" when nothing is known.

pci_label(V, D, Label) :-
    pci_label(V, D, -1, -1, Label).

pci_label(V, D, C, S, Label) :-
    (   pci_vendor_name(V, VName), pci_device_name(V, D, DName)
    ->  format(string(Label), "~w ~w", [VName, DName])
    ;   pci_vendor_name(V, VName)
    ->  pci_class_label(C, S, CName),
        (   CName == ""
        ->  format(string(Label), "~w device", [VName])
        ;   format(string(Label), "~w ~w", [VName, CName])
        )
    ;   pci_class_label(C, S, Label)
    ).

%!  pci_class_label(+Class, +Subclass, -Label) is det.

pci_class_label(C, S, Label) :-
    (   pci_class_name(C, S, Name)
    ->  format(string(Label), "~w", [Name])
    ;   pci_class_name(C, -1, Name)
    ->  format(string(Label), "~w", [Name])
    ;   Label = ""
    ).
