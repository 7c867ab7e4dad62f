"""What counts as "the same problem": the fingerprint of a latency incident.

Alert-to-ticket tools that key tickets on titles or unhashed labels create duplicates, and tools
whose key omits the environment let TEST and PROD overwrite each other's tickets. Here the key is an
explicit list of fields (project, environment and proxy always; metric family and proposal type by
default), hashed into the ledger document id and a short tracker label. Field names are part of the
hash, so changing the configured fields never silently merges old and new problems.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from gatehouse.tickets.settings import FingerprintField

Family = Literal["proxy", "target"]

# Cloud Monitoring latency metrics for Apigee -> what they measure. proxy/*: request received to
# response sent (includes the target); target/*: request sent to the target to response received.
LATENCY_METRICS: dict[str, Family] = {
    "apigee.googleapis.com/proxy/latencies": "proxy",
    "apigee.googleapis.com/proxyv2/latencies_percentile": "proxy",
    "apigee.googleapis.com/target/latencies": "target",
    "apigee.googleapis.com/targetv2/latencies_percentile": "target",
}
APIGEE_RESOURCE_TYPES = frozenset(
    {
        "apigee.googleapis.com/Proxy",
        "apigee.googleapis.com/ProxyV2",
        "apigee.googleapis.com/Target",
        "apigee.googleapis.com/TargetV2",
        "apigee.googleapis.com/Environment",
    }
)
LABEL_PREFIX = "gatehouse-fp-"
DIGEST_LABEL_PREFIX = "gatehouse-digest-"
_LABEL_HEX = 12  # 48 bits: tracker labels stay short (GitHub allows 50 characters)
_DOC_HEX = 32


def metric_family(metric: str | None, resource_type: str | None) -> tuple[Family | None, str]:
    """The family of a latency incident, or None and the reason gatehouse does not ticket it."""
    family = LATENCY_METRICS.get(metric or "")
    if family is None:
        return None, f"metric {metric or '(none)'} is not an Apigee latency metric"
    if resource_type is not None and resource_type not in APIGEE_RESOURCE_TYPES:
        return None, f"resource type {resource_type} is not an Apigee resource"
    return family, ""


@dataclass(frozen=True)
class Fingerprint:
    project: str
    environment: str
    proxy: str
    family: Family
    proposal: str
    fields: tuple[FingerprintField, ...]

    def value(self, name: FingerprintField) -> str:
        return str(getattr(self, name))

    @property
    def key(self) -> str:
        """Readable identity: ``project=p/environment=e/...`` over the configured fields."""
        return "/".join(f"{name}={self.value(name)}" for name in self.fields)

    @property
    def digest(self) -> str:
        canonical = json.dumps([[name, self.value(name)] for name in self.fields], separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    @property
    def doc_id(self) -> str:
        return self.digest[:_DOC_HEX]

    @property
    def label(self) -> str:
        return LABEL_PREFIX + self.digest[:_LABEL_HEX]

    def with_proposal(self, proposal: str) -> Fingerprint:
        return Fingerprint(self.project, self.environment, self.proxy, self.family, proposal, self.fields)


def alternatives(fp: Fingerprint, proposal_types: Iterable[str]) -> list[Fingerprint]:
    """Every fingerprint this problem could have had under another proposal type.

    A "cleared" notification is evaluated on later evidence, which may yield a different proposal
    than the one its ticket was opened with; its ticket is found among these.
    """
    if "proposal" not in fp.fields:
        return [fp]
    return [fp.with_proposal(kind) for kind in proposal_types]


def hour_bucket(now: float) -> str:
    """The UTC hour ``now`` falls in, as ``YYYYMMDDHH`` (the storm-control counter's key)."""
    return datetime.fromtimestamp(now, UTC).strftime("%Y%m%d%H")


def bucket_key(bucket: str) -> str:
    return f"bucket-{bucket}"


def digest_key(bucket: str) -> str:
    return f"digest-{bucket}"


def digest_label(bucket: str) -> str:
    return DIGEST_LABEL_PREFIX + bucket
