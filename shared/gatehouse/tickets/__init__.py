"""Tickets: turn Apigee latency incidents into one routing-policy ticket per problem.

Pure modules (no cloud SDK, no HTTP): ``settings``, ``fingerprint``, ``evidence``, ``diagnosis``,
``proxyconfig``, ``proposal``, ``render``, ``lifecycle`` and ``plan``. ``ports`` declares what the job
needs from the outside world, ``executor`` applies a plan through those ports, and ``job.run`` is the
one entry point: ``run(TicketPorts(...), TicketSettings(...), plan=False) -> RunReport``.
"""

from gatehouse.tickets.job import RunReport, run
from gatehouse.tickets.ports import TicketPorts
from gatehouse.tickets.settings import TicketSettings

__all__ = ["RunReport", "TicketPorts", "TicketSettings", "run"]
