"""Cloud Run job ``latency-tickets``: Apigee latency alerts -> one routing-policy ticket per problem.

Run every few minutes by Cloud Scheduler (and by `{"command": "tickets"}`). Exit code: 0 when every
message was handled (ticketed, commented, ignored or rejected as malformed), 1 when something was
left unacknowledged for the next run, 2 for bad settings.
"""

from __future__ import annotations

import os
import sys

from gatehouse.config import load_settings, load_tickets_config
from gatehouse.errors import InputError
from gatehouse.logging import bound, configure, event, get_logger

_log = get_logger("jobs.tickets")


def main() -> int:
    configure()
    try:
        settings = load_settings()
        config = load_tickets_config()
        from gatehouse import runtime

        ports = runtime.ticket_ports(settings, config)
        ticket_settings = runtime.ticket_settings(config, settings)
    except InputError as exc:
        event(_log, "invalid settings", level=40, error=str(exc))
        return 2
    plan = os.environ.get("GATEHOUSE_TICKETS_MODE", "apply") == "plan"
    from gatehouse.tickets import run

    with bound(component="latency-tickets", execution=os.environ.get("CLOUD_RUN_EXECUTION")):
        report = run(ports, ticket_settings, plan=plan)
        event(_log, "tickets run finished", report=report.to_dict())
        if plan:
            print(report.plan_text, file=sys.stderr)
    return int(report.exit_code)


if __name__ == "__main__":
    sys.exit(main())
