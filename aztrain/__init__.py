"""aztrain: an event-driven control plane for distributed GPU training on Azure.

Rooms, inner to outer (docs/architecture.md, *Layout*): `domain` (rules, no I/O), `service` (use cases
behind one facade, ports, the composition root), `adapters` (ports on Azure SDKs and on this machine),
`api` (the HTTP wire contract), `cli` (the `aztrain` command and its HTTP client).
"""
