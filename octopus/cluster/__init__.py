"""Several Octopus servers over etcd, surviving the loss of any of them (docs/cluster.md).

etcd (Raft) is the replicated, durable log; each Octopus node is a full replica that
answers queries, matches triggers and runs the knowledge base locally, in its own Prolog
store. Nothing here implements consensus.

- :mod:`octopus.cluster.etcd`: a small etcd v3 client over etcd's JSON gateway.
- :mod:`octopus.cluster.codec`: the key layout under the prefix, records as values.
- :mod:`octopus.cluster.replica`: :class:`Replica`, the apply path (etcd's watch stream
  into the core) and the replicated write path (writes as etcd transactions).
- :mod:`octopus.cluster.server`: what ``octopus serve --etcd`` adds to a connection
  (writes off the event loop, SYNC, SESSION, STALENESS, GET ... LINEARIZABLE).
- :mod:`octopus.cluster.launch`: real etcd members and nodes on loopback (tests, demo,
  benchmarks).

Use it through ``octopus.Engine(etcd=...)`` and ``octopus serve --etcd ...``.
"""

from octopus.cluster.replica import Replica

__all__ = ["Replica"]
