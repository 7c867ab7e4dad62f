"""gatehouse: Apigee in front of a fleet of Cloud Run services.

Layers (imports point down only; see ../README.md and pyproject's import-linter contracts):
entry points (functions/, jobs/, gatehouse.cli) -> use cases (gatehouse.registration, gatehouse.rotation,
gatehouse.tickets) -> ports (gatehouse.ports) / adapters (gatehouse.adapters) -> events, config, errors.
"""

__version__ = "0.1.0"
