"""Reads gatehouse's own entries back from Cloud Logging (``entries.list``) with google-cloud-logging.

Imported only by ``gatehouse history``: the client costs a few hundred milliseconds at import, and
nothing on a function's or job's path reads logs (they write JSON lines to stdout).
HTTP transport (``_use_grpc=False``), so the same code reaches the local stack's Logging stand-in
through ``endpoint``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import logging as cloud_logging

from gatehouse.adapters.gapic import map_google_error
from gatehouse.errors import InputError


class LogReader:
    def __init__(self, project: str, *, endpoint: str | None = None, anonymous: bool = False) -> None:
        credentials = None
        if anonymous:
            from google.auth.credentials import AnonymousCredentials

            credentials = AnonymousCredentials()  # type: ignore[no-untyped-call]
        self.project = project
        self.client = cloud_logging.Client(  # type: ignore[no-untyped-call]
            project=project,
            credentials=credentials,
            _use_grpc=False,
            client_options={"api_endpoint": endpoint} if endpoint else None,
        )

    def entries(self, filter_: str, *, limit: int, page_size: int = 1000) -> Iterator[dict[str, Any]]:
        """Entries matching ``filter_`` (oldest first), at most ``limit``, as
        ``{"timestamp", "severity", "payload"}``."""
        try:
            found = self.client.list_entries(  # type: ignore[no-untyped-call]
                resource_names=[f"projects/{self.project}"],
                filter_=filter_,
                order_by=cloud_logging.ASCENDING,
                page_size=page_size,
                max_results=limit,
            )
            for entry in found:
                stamp = entry.timestamp
                yield {
                    "timestamp": stamp.isoformat().replace("+00:00", "Z") if stamp else "",
                    "severity": str(entry.severity or "DEFAULT"),
                    "payload": entry.payload
                    if isinstance(entry.payload, dict)
                    else {"message": entry.payload},
                }
        except gexc.BadRequest as exc:  # INVALID_ARGUMENT (over HTTP: 400): the filter
            raise InputError(f"Cloud Logging refused the query: {exc.message}") from None
        except gexc.GoogleAPICallError as exc:
            raise map_google_error(exc, "list log entries") from None
