"""gatehouse: Apigee in front of a fleet of Cloud Run services.

Layers (imports point down only; see ../README.md and pyproject's import-linter contracts):
entry points (functions/, jobs/, shared.cli) -> use cases (shared.registration, shared.rotation,
shared.tickets) -> ports (shared.ports) / adapters (shared.adapters) -> events, config, errors.
"""

__version__ = "0.1.0"
