"""Three tiers of hubs — city, district, street — federated with NATS's own features: each hub's nats-server is
a JetStream domain of its own, linked to its parent's by a leafnode connection; events a tier does not own are
handed down through a stream the child's ingest stream sources, and each child's unified streams are sourced up
into its parent's, so every tier sees everything below it on the same subjects. Accounts and user permissions,
generated from the grid hierarchy, keep each scope's credentials to its own subjects (docs/deployment.md).

- :mod:`~hub.federation.scope` — a hub's scope in the grid hierarchy; the ``[tier]`` checks of ``validate``.
- :mod:`~hub.federation.permissions`, :mod:`~hub.federation.deployment` — ``cityhub nats-config``: each hub's
  nats-server config, users and credentials.
- :mod:`~hub.federation.sourcing` — the streams' sources between the domains (down, up, coordination, links).
- :mod:`~hub.federation.ownership`, :mod:`~hub.federation.handoff` — which hub handles an event; the
  pipeline's outputs for the ones it hands down or refuses.
- :mod:`~hub.federation.escalating_up`, :mod:`~hub.federation.linking`, :mod:`~hub.federation.services` —
  escalation to the parent by policy, cross-scope incidents, and the two run beside the pipeline.
- :mod:`~hub.federation.local`, :mod:`~hub.federation.demo` — a deployment on loopback; ``cityhub demo --tiers``.
"""
