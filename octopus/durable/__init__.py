"""Durability: a journal written ahead of every change, snapshots, recovery.

:class:`~octopus.durable.persistence.Persistence` is what ``Engine(path=...)`` attaches
to its core; :mod:`~octopus.durable.format` the on-disk formats;
:mod:`~octopus.durable.recovery` reads a data directory; :mod:`~octopus.durable.tools`
is ``octopus data check|dump|repair``. docs/durability.md says what is promised.
"""
