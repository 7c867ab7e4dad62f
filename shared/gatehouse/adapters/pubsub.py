"""The tickets job's subscription (``gatehouse.tickets.ports.Messages``) over synchronous Pub/Sub pull.

The job drains a batch, plans it as a whole and acknowledges only what is durable, so it needs
pull-then-ack, not a streaming callback. ``return_immediately`` is deprecated: a pull instead waits
up to ``pull_timeout`` seconds, and an empty answer or DEADLINE_EXCEEDED means drained. The server
may return fewer messages than asked for even when more are waiting (the emulator returns at most
100 a pull); the job keeps pulling until an empty answer. Each pull asks for at most 1,000
messages and each acknowledge carries at most 1,000 ids (the API allows about 2,500 or 512 KiB).
``PUBSUB_EMULATOR_HOST`` is honoured by the client library itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud.pubsub_v1 import SubscriberClient

from gatehouse.adapters.gapic import raise_mapped
from gatehouse.tickets.ports import PulledMessage

MAX_PULL = 1_000
ACK_CHUNK = 1_000


class PubSubMessages:
    """Pull and acknowledge on one subscription (``projects/P/subscriptions/S``)."""

    def __init__(self, subscription: str, *, pull_timeout: float = 5.0, client: Any | None = None) -> None:
        self.subscription = subscription
        self.pull_timeout = pull_timeout
        self.client = client or SubscriberClient()

    def pull(self, max_messages: int) -> list[PulledMessage]:
        request = {"subscription": self.subscription, "max_messages": max(1, min(max_messages, MAX_PULL))}
        try:
            response = self.client.pull(request=request, timeout=self.pull_timeout)
        except gexc.DeadlineExceeded:
            return []  # nothing arrived while we waited: drained
        except Exception as exc:
            raise_mapped(exc, f"pull {self.subscription}")
        return [
            PulledMessage(received.ack_id, bytes(received.message.data), dict(received.message.attributes))
            for received in response.received_messages
        ]

    def ack(self, ack_ids: Sequence[str]) -> None:
        ids = list(ack_ids)
        for start in range(0, len(ids), ACK_CHUNK):
            chunk = ids[start : start + ACK_CHUNK]
            try:
                self.client.acknowledge(request={"subscription": self.subscription, "ack_ids": chunk})
            except Exception as exc:
                raise_mapped(exc, f"acknowledge {len(chunk)} message(s) on {self.subscription}")

    def release(self, ack_ids: Sequence[str]) -> None:
        """Hand messages back at once (ack deadline 0) instead of letting them hide until it expires."""
        ids = list(ack_ids)
        for start in range(0, len(ids), ACK_CHUNK):
            chunk = ids[start : start + ACK_CHUNK]
            try:
                self.client.modify_ack_deadline(
                    request={"subscription": self.subscription, "ack_ids": chunk, "ack_deadline_seconds": 0}
                )
            except Exception as exc:
                raise_mapped(exc, f"release {len(chunk)} message(s) on {self.subscription}")

    def close(self) -> None:
        self.client.close()
