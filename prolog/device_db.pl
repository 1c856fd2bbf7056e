/*  The driver database: which driver binary serves which device.

    A knowledge-base file (consulted into an engine's knowledge base, or into `user`
    by the plunit suite), in the spirit of Barrelfish's usr/skb/programs/device_db.pl.
    Two platforms share it:

      barrelfish  the original's drivers, which the boot demo starts;
      linux       what Linux binds to common virtual and real hardware, which
                  `octopus kaluga --sysfs` compares with the `driver` link in sysfs.

    Where both have a driver for a device, find_pci_driver/2 (no platform) prefers
    the higher priority: Barrelfish's exact-id rules are 50, Linux's exact-id rules
    40, Linux's vendor+class rules 20, class-only rules 10.
*/

:- discontiguous driver/7, pci_driver/3, usb_driver/3.

%!  driver(?Binary, ?Platform, ?Module, ?CoreHint, ?CoreOffset, ?MultiInstance,
%!         ?InterruptModels) is nondet.
%
%   One fact per driver binary. Module is the program (Barrelfish) or kernel module
%   (Linux) that contains it. Instance N of a multi-instance driver runs on core
%   CoreHint + CoreOffset * N; a driver that is not multi-instance is started once.
%   InterruptModels lists what the driver can use: legacy, msi, msix.

%!  pci_driver(?Binary, ?Match, ?Priority) is nondet.
%
%   Binary drives the PCI functions that Match matches (see kaluga.pl, pci_match/2):
%
%     card(Vendor, Device)                         exact ids, any function/subsystem
%     card(Vendor, Device, SubVendor, SubDevice)   exact ids and subsystem
%     card_range(Vendor, DeviceLow, DeviceHigh)    a range of device ids
%     class(Class, Subclass, ProgIf)               by class code (_ is a wildcard)
%     vendor_class(Vendor, Class, Subclass)        a vendor's devices of a class

%   --- Barrelfish (the original's table) -------------------------------------------

driver(e1000n,   barrelfish, e1000n,   1, 1, true,  [legacy, msi]).
driver(e10k,     barrelfish, e10k,     2, 1, true,  [msix]).
driver(sfn5122f, barrelfish, sfn5122f, 2, 0, false, [msix]).
driver(mlx4,     barrelfish, mlx4,     3, 0, false, [msix]).
driver(ahcid,    barrelfish, ahcid,    0, 1, true,  [legacy, msi]).
driver(xeon_phi, barrelfish, xeon_phi, 0, 1, true,  [legacy]).
driver(ioat_dma, barrelfish, ioat_dma, 0, 1, true,  [msix]).
driver(rtl8029,  barrelfish, rtl8029,  0, 0, false, [legacy]).
driver(usb_manager, barrelfish, usb_manager, 1, 1, true, [legacy, msi]).

pci_driver(e1000n, card(0x8086, 0x1079), 50).       % 82546GB
pci_driver(e1000n, card(0x8086, 0x107d), 50).       % 82572EI
pci_driver(e1000n, card(0x8086, 0x105e), 50).       % 82571EB
pci_driver(e1000n, card(0x8086, 0x1096), 50).       % 80003ES2LAN
pci_driver(e1000n, card(0x8086, 0x100e), 50).       % 82540EM (QEMU's e1000)
pci_driver(e1000n, card(0x8086, 0x10a7), 50).       % 82575EB
pci_driver(e1000n, card(0x8086, 0x10d3), 50).       % 82574L (QEMU's e1000e)
pci_driver(e1000n, card(0x8086, 0x10c9), 50).       % 82576
pci_driver(e1000n, card(0x8086, 0x1521), 50).       % I350
pci_driver(e10k,     card(0x8086, 0x10fb), 50).     % 82599
pci_driver(sfn5122f, card(0x1924, 0x0803), 50).     % Solarflare SFC9020
pci_driver(mlx4,     card(0x15b3, 0x1003), 50).     % ConnectX-3
pci_driver(ahcid,    card(0x8086, 0x2922), 50).     % ICH9 AHCI
pci_driver(ahcid,    card(0x8086, 0x3a22), 50).     % ICH10 AHCI
pci_driver(ahcid,    card(0x1002, 0x4390), 50).     % SB7x0 AHCI
pci_driver(xeon_phi, card(0x8086, 0x225e), 50).     % Xeon Phi coprocessor
pci_driver(ioat_dma, card_range(0x8086, 0x0e20, 0x0e27), 50).  % Xeon E5 v2 Crystal Beach DMA
pci_driver(rtl8029,  card(0x10ec, 0x8029), 50).     % RTL-8029 (NE2000)
pci_driver(usb_manager, class(0x0c, 0x03, 0x20), 45).  % EHCI
pci_driver(usb_manager, class(0x0c, 0x03, 0x30), 45).  % xHCI

%   --- Linux: what a current kernel binds ----------------------------------------

driver('virtio-pci',   linux, virtio_pci,   0, 0, true, [legacy, msix]).
driver(e1000,          linux, e1000,        0, 0, true, [legacy]).
driver(e1000e,         linux, e1000e,       0, 0, true, [legacy, msi, msix]).
driver(igb,            linux, igb,          0, 0, true, [legacy, msi, msix]).
driver(ixgbe,          linux, ixgbe,        0, 0, true, [legacy, msi, msix]).
driver(mlx4_core,      linux, mlx4_core,    0, 0, true, [msix]).
driver(sfc,            linux, sfc,          0, 0, true, [legacy, msi, msix]).
driver(ioatdma,        linux, ioatdma,      0, 0, true, [msix]).
driver('ne2k-pci',     linux, ne2k_pci,     0, 0, true, [legacy]).
driver('8139too',      linux, '8139too',    0, 0, true, [legacy]).
driver(r8169,          linux, r8169,        0, 0, true, [legacy, msi, msix]).
driver(vmxnet3,        linux, vmxnet3,      0, 0, true, [legacy, msi, msix]).
driver(ahci,           linux, ahci,         0, 0, true, [legacy, msi, msix]).
driver(nvme,           linux, nvme,         0, 0, true, [msix]).
driver(ata_piix,       linux, ata_piix,     0, 0, true, [legacy]).
driver(vmw_pvscsi,     linux, vmw_pvscsi,   0, 0, true, [msix]).
driver(mptspi,         linux, mptspi,       0, 0, true, [legacy, msi]).
driver(megaraid_sas,   linux, megaraid_sas, 0, 0, true, [msix]).
driver(xhci_hcd,       linux, xhci_pci,     0, 0, true, [msi, msix]).
driver('ehci-pci',     linux, ehci_pci,     0, 0, true, [legacy]).
driver('ohci-pci',     linux, ohci_pci,     0, 0, true, [legacy]).
driver(uhci_hcd,       linux, uhci_hcd,     0, 0, true, [legacy]).
driver(snd_hda_intel,  linux, snd_hda_intel, 0, 0, true, [legacy, msi]).
driver(snd_intel8x0,   linux, snd_intel8x0, 0, 0, true, [legacy]).
driver(i801_smbus,     linux, i2c_i801,     0, 0, true, [legacy]).
driver(piix4_smbus,    linux, i2c_piix4,    0, 0, true, [legacy]).
driver(lpc_ich,        linux, lpc_ich,      0, 0, true, [legacy]).
driver(pcieport,       linux, pcieportdrv,  0, 0, true, [legacy, msi, msix]).
driver('bochs-drm',    linux, bochs,        0, 0, true, [legacy]).
driver(qxl,            linux, qxl,          0, 0, true, [legacy]).
driver(vmwgfx,         linux, vmwgfx,       0, 0, true, [legacy, msi]).
driver(i915,           linux, i915,         0, 0, true, [msi]).
driver(amdgpu,         linux, amdgpu,       0, 0, true, [msi]).
driver(nouveau,        linux, nouveau,      0, 0, true, [msi]).
driver(iwlwifi,        linux, iwlwifi,      0, 0, true, [msi, msix]).
driver('xen-platform-pci', linux, xen_platform_pci, 0, 0, true, [legacy]).

% virtio_pci_id_table matches vendor 0x1af4, any device; probe accepts 0x1000-0x107f
pci_driver('virtio-pci', card_range(0x1af4, 0x1000, 0x107f), 40).
pci_driver(e1000,    card(0x8086, 0x100e), 40).
pci_driver(e1000,    card(0x8086, 0x100f), 40).
pci_driver(e1000,    card(0x8086, 0x1079), 40).
pci_driver(e1000,    card(0x8086, 0x107c), 40).
pci_driver(e1000e,   card(0x8086, 0x10d3), 40).
pci_driver(e1000e,   card(0x8086, 0x105e), 40).
pci_driver(e1000e,   card(0x8086, 0x107d), 40).
pci_driver(e1000e,   card(0x8086, 0x1096), 40).
pci_driver(e1000e,   card(0x8086, 0x15b8), 40).
pci_driver(e1000e,   card(0x8086, 0x15bc), 40).
pci_driver(igb,      card(0x8086, 0x10a7), 40).
pci_driver(igb,      card(0x8086, 0x10c9), 40).
pci_driver(igb,      card(0x8086, 0x1521), 40).
pci_driver(igb,      card(0x8086, 0x1533), 40).
pci_driver(igb,      card(0x8086, 0x1539), 40).
pci_driver(ixgbe,    card(0x8086, 0x10fb), 40).
pci_driver(ixgbe,    card(0x8086, 0x1528), 40).
pci_driver(mlx4_core, card(0x15b3, 0x1003), 40).
pci_driver(mlx4_core, card(0x15b3, 0x1007), 40).
pci_driver(sfc,      card(0x1924, 0x0803), 40).
pci_driver(ioatdma,  card_range(0x8086, 0x0e20, 0x0e27), 40).
pci_driver('ne2k-pci', card(0x10ec, 0x8029), 40).
pci_driver('8139too', card(0x10ec, 0x8139), 40).
pci_driver(r8169,    card(0x10ec, 0x8168), 40).
pci_driver(r8169,    card(0x10ec, 0x8169), 40).
pci_driver(vmxnet3,  card(0x15ad, 0x07b0), 40).
pci_driver(ata_piix, card(0x8086, 0x7010), 40).     % PIIX3 IDE (QEMU i440fx)
pci_driver(ata_piix, card(0x8086, 0x7111), 40).     % PIIX4 IDE
pci_driver(vmw_pvscsi, card(0x15ad, 0x07c0), 40).
pci_driver(mptspi,   card(0x1000, 0x0030), 40).
pci_driver(megaraid_sas, card(0x1000, 0x005b), 40).
pci_driver(snd_intel8x0, card(0x8086, 0x2415), 40).
pci_driver(i801_smbus, card(0x8086, 0x2930), 40).   % ICH9 SMBus (QEMU q35)
pci_driver(i801_smbus, card(0x8086, 0x1c22), 40).
pci_driver(i801_smbus, card(0x8086, 0xa123), 40).
pci_driver(piix4_smbus, card(0x8086, 0x7113), 40).  % PIIX4 ACPI/SMBus (QEMU i440fx)
pci_driver(lpc_ich,  card(0x8086, 0x2918), 40).     % ICH9 LPC (QEMU q35)
pci_driver('bochs-drm', card(0x1234, 0x1111), 40).
pci_driver(qxl,      card(0x1b36, 0x0100), 40).
pci_driver(vmwgfx,   card(0x15ad, 0x0405), 40).
pci_driver('xen-platform-pci', card(0x5853, 0x0001), 40).

% Linux matches these by class code
pci_driver(ahci,     class(0x01, 0x06, 0x01), 10).
pci_driver(nvme,     class(0x01, 0x08, 0x02), 10).
pci_driver(xhci_hcd, class(0x0c, 0x03, 0x30), 10).
pci_driver('ehci-pci', class(0x0c, 0x03, 0x20), 10).
pci_driver('ohci-pci', class(0x0c, 0x03, 0x10), 10).
pci_driver(uhci_hcd, class(0x0c, 0x03, 0x00), 10).
pci_driver(pcieport, class(0x06, 0x04, _), 10).
pci_driver(snd_hda_intel, class(0x04, 0x03, _), 10).
pci_driver(i915,     vendor_class(0x8086, 0x03, _), 20).
pci_driver(amdgpu,   vendor_class(0x1002, 0x03, _), 20).
pci_driver(nouveau,  vendor_class(0x10de, 0x03, _), 20).
pci_driver(iwlwifi,  vendor_class(0x8086, 0x02, 0x80), 20).

%   --- devices that are not PCI functions (Barrelfish) ------------------------------

%!  device_driver(?Kind, ?Binary) is nondet.
%
%   Drivers for the device records that are not PCI functions: the ACPI tables
%   (hw.acpi), PCI root bridges (hw.pci.rootbridge.<n>), processors by their type
%   (hw.processor.<n>).

device_driver(acpi, acpi).
device_driver(pci_root_bridge, pci).
device_driver(cpu(x86_64), cpu).
device_driver(cpu(x86_32), cpu).

driver(acpi, barrelfish, acpi, 0, 0, false, [legacy]).
driver(pci,  barrelfish, pci,  0, 0, false, [legacy]).
driver(cpu,  barrelfish, corectrl, 0, 0, true, []).

%!  usb_driver(?Binary, ?Match, ?Priority) is nondet.
%
%   Match is usb(Class, Subclass, Protocol, Vendor, Product), _ a wildcard.

driver(usb_keyboard, barrelfish, usb_keyboard, 0, 0, true, []).
driver(usb_mouse,    barrelfish, usb_mouse,    0, 0, true, []).
driver(usb_storage,  barrelfish, usb_storage,  0, 0, true, []).
driver(usb_hub,      barrelfish, usb_hub,      0, 0, true, []).

usb_driver(usb_keyboard, usb(0x03, 0x01, 0x01, _, _), 50).
usb_driver(usb_mouse,    usb(0x03, 0x01, 0x02, _, _), 50).
usb_driver(usb_storage,  usb(0x08, 0x06, 0x50, _, _), 50).
usb_driver(usb_hub,      usb(0x09, _, _, _, _), 50).

%   --- what the drivers provide and need (the boot demo's services) -----------------

%!  driver_service(?Binary, ?Service) is nondet.
%
%   The kind of service a running instance registers with the name service (as the
%   attribute `service` of its name record).

driver_service(acpi, acpi).
driver_service(pci, pci).
driver_service(e1000n, ethernet).
driver_service(e10k, ethernet).
driver_service(sfn5122f, ethernet).
driver_service(mlx4, ethernet).
driver_service(rtl8029, ethernet).
driver_service(ahcid, block).
driver_service(xeon_phi, coprocessor).
driver_service(ioat_dma, dma).
driver_service(usb_manager, usb).
driver_service(usb_keyboard, keyboard).
driver_service(usb_mouse, mouse).
driver_service(usb_storage, block).
driver_service(usb_hub, usb_hub).

%!  driver_requires(?Binary, ?Query) is nondet.
%
%   Query (Octopus query text) names a service the driver waits for before it
%   registers its own.

driver_requires(Binary, "acpi") :-
    barrelfish_pci_driver(Binary).
driver_requires(Binary, "pci") :-
    barrelfish_pci_driver(Binary).
driver_requires(Binary, "_ { service: usb }") :-
    driver(Binary, barrelfish, _, _, _, _, _),
    once(usb_driver(Binary, _, _)).

barrelfish_pci_driver(Binary) :-
    driver(Binary, barrelfish, _, _, _, _, _),
    once(pci_driver(Binary, _, _)).

%!  boot_service(?Name, ?Requires) is nondet.
%
%   System services that start at boot, independent of any device, and wait by name
%   (Requires is a query) for the service they need: the onboard NIC's driver, the
%   boot disk's controller, the first DMA engine.

boot_service(netd, "e1000n.0").
boot_service(vfs, "ahcid.0").
boot_service(dma_mgr, "ioat_dma.0").
