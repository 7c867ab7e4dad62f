"""Settings of the tickets job, as one frozen value the entry point fills from the environment.

Kept apart from ``gatehouse.config.Settings`` so the pure planning modules can take it without pulling
in pydantic-settings, and so every knob that shapes a decision (reopen window, hourly cap, won't-fix
factor, diagnosis thresholds) is in one place a test can vary.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

FingerprintField = Literal["project", "environment", "proxy", "family", "proposal"]
# Never shared between projects or environments; proxy is required because evidence is per proxy.
FINGERPRINT_FIELDS: tuple[FingerprintField, ...] = ("project", "environment", "proxy", "family", "proposal")
REQUIRED_FINGERPRINT_FIELDS: tuple[FingerprintField, ...] = ("project", "environment", "proxy")
OWNER_LABEL = "gatehouse-owner"  # the proxy label registration writes its owner id into
GITHUB_BODY_LIMIT = 65_536  # characters
JIRA_BODY_LIMIT = 32_767  # characters, description and comment alike


class TicketSettings(BaseModel):
    """Every tunable of the tickets job, with defaults fit for a GitHub Issues tracker."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # identity of a problem: project, environment and proxy always; family and proposal optional
    fingerprint_fields: tuple[FingerprintField, ...] = (
        "project",
        "environment",
        "proxy",
        "family",
        "proposal",
    )
    labels: tuple[str, ...] = ("gatehouse", "apigee-latency")

    # what this installation looks after: the Apigee organization its stats and bundle reads go to
    # (proposals name it, never an incident's scoping project; incidents labelled with another org
    # are acknowledged without a ticket; "" accepts any), and the owner id registration labels its
    # proxies with. Incidents for proxies without that label get no ticket unless
    # ``include_unowned_proxies`` (teams that want tickets for hand-made proxies too).
    apigee_org: str = ""
    owner_id: str = "gatehouse"
    include_unowned_proxies: bool = False

    # lifecycle
    reopen_window_seconds: float = Field(default=7 * 86400, ge=0)
    wontfix_labels: tuple[str, ...] = ("wontfix", "won't fix")
    wontfix_worsen_factor: float = Field(default=2.0, gt=1)

    # storm control: new tickets per UTC hour; the rest go to one digest ticket per hour
    max_new_tickets_per_hour: int = Field(default=10, ge=0)

    # tracker size limits (characters)
    max_body_chars: int = Field(default=GITHUB_BODY_LIMIT, ge=2_000)
    max_title_chars: int = Field(default=200, ge=40, le=255)

    # evidence windows
    baseline_minutes: int = Field(default=60, ge=5, le=24 * 60)
    max_incident_window_minutes: int = Field(default=180, ge=5, le=24 * 60)
    default_window_minutes: int = Field(default=30, ge=5, le=24 * 60)
    # a transient analytics/bundle failure is retried (messages left unacked) until the incident is
    # this old; after that the ticket goes out without the missing evidence
    evidence_wait_seconds: float = Field(default=1800, ge=0)
    # the Apigee analytics API allows about 100 requests a minute per organization
    stats_calls_per_minute: int = Field(default=90, ge=1, le=100)

    # diagnosis thresholds
    latency_rise_factor: float = Field(default=1.5, gt=1)
    traffic_spike_factor: float = Field(default=2.0, gt=1)
    dominance: float = Field(default=0.6, gt=0.5, le=1)

    # proposals: primary Cloud Run region -> failover region for the second TargetServer
    failover_regions: dict[str, str] = Field(default_factory=dict)

    # exactly-once machinery
    claim_timeout_seconds: float = Field(default=600, gt=0)

    # draining: one run reads at most this many messages, then plans them as one batch
    max_messages: int = Field(default=10_000, ge=1)
    pull_batch: int = Field(default=1_000, ge=1, le=1_000)

    @field_validator("fingerprint_fields")
    @classmethod
    def _fields(cls, value: tuple[FingerprintField, ...]) -> tuple[FingerprintField, ...]:
        if len(set(value)) != len(value):
            raise ValueError("fingerprint_fields has duplicates")
        missing = [name for name in REQUIRED_FINGERPRINT_FIELDS if name not in value]
        if missing:
            raise ValueError(f"fingerprint_fields must include {', '.join(missing)}")
        return tuple(
            name for name in FINGERPRINT_FIELDS if name in value
        )  # canonical order: same config, same hash
