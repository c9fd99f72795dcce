"""Three tiers of hubs — city, district, street — federated with NATS's own features: each hub's nats-server is
a JetStream domain of its own, linked to its parent's by a leafnode connection; events a tier does not own are
handed down through a stream the child's ingest stream sources, and each child's unified streams are sourced up
into its parent's, so every tier sees everything below it on the same subjects. Accounts and user permissions,
generated from the grid hierarchy, keep each scope's credentials to its own subjects.

- :mod:`hub.federation.scope` — a hub's scope in the grid hierarchy, and the ``[tier]`` checks of ``validate``.
"""
