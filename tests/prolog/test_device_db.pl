/*  plunit suite for prolog/device_db.pl and prolog/kaluga.pl (run from pytest by
    tests/kaluga/test_device_db.py, or by hand:
    swipl -g run_tests -t halt tests/prolog/test_device_db.pl).
*/

:- use_module(library(plunit)).

:- prolog_load_context(directory, Dir),
   atom_concat(Dir, '/../../prolog/device_db.pl', DB),
   atom_concat(Dir, '/../../prolog/kaluga.pl', K),
   consult(DB),
   consult(K).

card(V, D, Card) :- Card = pci(V, D, 0, -1, -1, -1, -1, -1).
card(V, D, C, S, P, Card) :- Card = pci(V, D, 0, -1, -1, C, S, P).

binary(Platform, Card, B) :- find_pci_driver(Platform, Card, driver(B, _, _, _, _, _, _)).

:- begin_tests(barrelfish_table).

test(e1000n, forall(member(D, [0x100e, 0x10d3, 0x107d, 0x1079, 0x105e, 0x1096, 0x10a7,
                                0x10c9, 0x1521]))) :-
    card(0x8086, D, C), binary(barrelfish, C, e1000n).
test(e10k) :- card(0x8086, 0x10fb, C), binary(barrelfish, C, e10k).
test(sfn5122f) :- card(0x1924, 0x0803, C), binary(barrelfish, C, sfn5122f).
test(mlx4) :- card(0x15b3, 0x1003, C), binary(barrelfish, C, mlx4).
test(ahcid) :- card(0x8086, 0x2922, C), binary(barrelfish, C, ahcid).
test(xeon_phi) :- card(0x8086, 0x225e, C), binary(barrelfish, C, xeon_phi).
test(ioat_dma, forall(between(0x0e20, 0x0e27, D))) :-
    card(0x8086, D, C), binary(barrelfish, C, ioat_dma).
test(ioat_dma_range_ends, [fail]) :- card(0x8086, 0x0e28, C), binary(barrelfish, C, _).
test(rtl8029) :- card(0x10ec, 0x8029, C), binary(barrelfish, C, rtl8029).
test(no_match, [fail]) :- card(0xabcd, 0x1234, C), find_pci_driver(C, _).
test(placement) :-
    card(0x8086, 0x10fb, C),
    find_pci_driver(barrelfish, C, driver(e10k, e10k, 2, 1, true, [msix], 50)).
test(start_once) :-
    card(0x15b3, 0x1003, C),
    find_pci_driver(C, driver(mlx4, _, 3, 0, false, _, _)).
test(usb_host_by_class) :-
    card(0x1b36, 0x000d, 0x0c, 0x03, 0x30, C), binary(barrelfish, C, usb_manager).

:- end_tests(barrelfish_table).

:- begin_tests(linux_table).

test(virtio, forall(member(D, [0x1000, 0x1041, 0x1042, 0x1044, 0x1045, 0x1053, 0x107f]))) :-
    card(0x1af4, D, C), binary(linux, C, 'virtio-pci').
test(virtio_outside_range, [fail]) :- card(0x1af4, 0x1110, C), binary(linux, C, _).
test(e1000) :- card(0x8086, 0x100e, C), binary(linux, C, e1000).
test(e1000e) :- card(0x8086, 0x10d3, C), binary(linux, C, e1000e).
test(nvme_by_class) :- card(0x144d, 0xa808, 0x01, 0x08, 0x02, C), binary(linux, C, nvme).
test(ahci_by_class) :- card(0x8086, 0x2922, 0x01, 0x06, 0x01, C), binary(linux, C, ahci).
test(xhci_by_class) :- card(0x1b36, 0x000d, 0x0c, 0x03, 0x30, C), binary(linux, C, xhci_hcd).
test(ehci_uhci) :-
    card(0x8086, 0x293a, 0x0c, 0x03, 0x20, C1), binary(linux, C1, 'ehci-pci'),
    card(0x8086, 0x2934, 0x0c, 0x03, 0x00, C2), binary(linux, C2, uhci_hcd).
test(exact_id_beats_class) :-
    card(0x8086, 0x2918, 0x06, 0x01, 0x00, C), binary(linux, C, lpc_ich).
test(vendor_class_beats_class) :-
    card(0x8086, 0x3e92, 0x03, 0x00, 0x00, C), binary(linux, C, i915).
test(host_bridge_unbound, [fail]) :-
    card(0x8086, 0x0d57, 0x06, 0x00, 0x00, C), binary(linux, C, _).
test(pcieport) :- card(0x8086, 0x1901, 0x06, 0x04, 0x00, C), binary(linux, C, pcieport).

:- end_tests(linux_table).

:- begin_tests(priorities).

test(barrelfish_wins_without_platform) :-
    card(0x8086, 0x100e, C), find_pci_driver(C, driver(e1000n, _, _, _, _, _, 50)).
test(linux_only_device_without_platform) :-
    card(0x1af4, 0x1041, C), find_pci_driver(C, driver('virtio-pci', _, _, _, _, _, 40)).
test(every_rule_names_a_driver, [nondet]) :-
    forall(pci_driver(B, _, _), driver(B, _, _, _, _, _, _)),
    forall(usb_driver(B, _, _), driver(B, _, _, _, _, _, _)),
    forall(device_driver(_, B), driver(B, _, _, _, _, _, _)).
test(one_driver_fact_per_binary) :-
    findall(B, driver(B, _, _, _, _, _, _), Bs),
    msort(Bs, Sorted), sort(Bs, Set), Sorted == Set.
test(deterministic) :-
    card(0x8086, 0x10d3, C), findall(D, find_pci_driver(C, D), [_]).

:- end_tests(priorities).

:- begin_tests(other_devices).

test(acpi) :- find_device_driver(barrelfish, acpi, driver(acpi, _, 0, 0, false, _, _)).
test(root_bridge) :- find_device_driver(barrelfish, pci_root_bridge, driver(pci, _, _, _, _, _, _)).
test(cpu) :- find_device_driver(barrelfish, cpu(x86_64), driver(cpu, _, _, _, true, _, _)).
test(keyboard) :-
    find_usb_driver(barrelfish, usb(0x03, 0x01, 0x01, 0x046d, 0xc31c), driver(usb_keyboard, _, _, _, _, _, _)).
test(storage) :-
    find_usb_driver(_, usb(0x08, 0x06, 0x50, 0x0781, 0x5567), driver(usb_storage, _, _, _, _, _, _)).
test(unknown_usb, [fail]) :- find_usb_driver(_, usb(0xff, 0, 0, 1, 2), _).
test(requires) :-
    findall(Q, driver_requires(e1000n, Q), Qs), Qs == ["acpi", "pci"].
test(label_unknown) :- pci_label(0x1234, 0x5678, L), L == "".

:- end_tests(other_devices).
