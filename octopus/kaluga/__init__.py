"""Kaluga, the device manager, with the boot demo and the sysfs reader.

- :mod:`octopus.kaluga.kaluga`: :class:`Kaluga` watches device records and starts the
  drivers the knowledge base names (:mod:`octopus.kaluga.drivers`).
- :mod:`octopus.kaluga.machine`, :mod:`octopus.kaluga.boot`: a simulated x86 machine
  booting with no hard-coded ordering (``octopus demo``).
- :mod:`octopus.kaluga.sysfs`: this machine's real PCI functions (``octopus kaluga``).
"""

from octopus.kaluga.drivers import DriverDatabase, DriverInfo, DriverStart
from octopus.kaluga.kaluga import Decision, Kaluga, Starter, ThreadStarter

__all__ = ["Decision", "DriverDatabase", "DriverInfo", "DriverStart", "Kaluga", "Starter",
           "ThreadStarter"]
