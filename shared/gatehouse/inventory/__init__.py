"""The fleet inventory: one model of services, proxies, identities, credentials and tickets.

``model`` joins what was read (pure), ``gather`` reads it in bulk through the ports, ``render``
prints it (terminal, JSON, one self-contained HTML page), ``history`` turns gatehouse's own log
entries into a per-resource timeline.
"""
