"""Real clients behind the Protocols of ``gatehouse.ports``. Each takes an endpoint override and
anonymous credentials for the local stack and otherwise runs the production code path."""
