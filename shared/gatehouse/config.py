"""Typed settings, read once per process from the environment (prefix ``GATEHOUSE_``).

Entry points call :func:`load_settings` and pass the result down; nothing below the entry points
reads ``os.environ``. List values are comma-separated (``GATEHOUSE_APIGEE_ENVIRONMENTS=test,prod``).
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from gatehouse.errors import InputError

_ENV_NAME = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
_OWNER_ID = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")


class Policy(StrEnum):
    """What registration may do to proxies it owns (external-dns semantics)."""

    SYNC = "sync"  # create, update, and undeploy when the service goes away
    UPSERT_ONLY = "upsert-only"  # create and update, never undeploy
    CREATE_ONLY = "create-only"  # create only


def _pairs(value: object, shape: str) -> object:
    """``a=b,c=d`` -> ``{"a": "b", "c": "d"}``."""
    if not isinstance(value, str):
        return value
    pairs = [p.split("=", 1) for p in value.split(",") if p.strip()]
    if any(len(p) != 2 or not p[0].strip() or not p[1].strip() for p in pairs):
        raise ValueError(f"expected comma-separated {shape} pairs")
    return {a.strip(): b.strip() for a, b in pairs}


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """Everything an entry point needs to build adapters and run a use case."""

    model_config = SettingsConfigDict(env_prefix="GATEHOUSE_", frozen=True, extra="ignore")

    # identity of this installation: written on every proxy gatehouse creates
    owner_id: str = "gatehouse"

    # Apigee
    apigee_org: str = ""
    apigee_environments: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["test"])
    apigee_endpoint: str = "https://apigee.googleapis.com"
    # the identity Apigee uses to mint Google ID tokens for targets; holds roles/run.invoker per service
    proxy_service_account: str = ""
    policy: Policy = Policy.UPSERT_ONLY
    keep_revisions: int = Field(default=5, ge=1, le=200)
    deploy_timeout_seconds: float = Field(default=300.0, gt=0)
    # the watch looks after 0.5 s, then backs off to this interval: a 20 s Apigee deployment costs
    # about 6 status reads (0.5, 1.5, 3.5, 7.5, 12.5, 17.5, 22.5 s)
    deploy_poll_seconds: float = Field(default=5.0, gt=0)
    # per-process client-side budget; Apigee allows 6,000 management calls a minute per org
    apigee_calls_per_minute: int = Field(default=1200, ge=1, le=6000)

    # Cloud Run: the projects and regions gatehouse acts on (a full reconcile sweeps them; events
    # and commands for any other project or region are acknowledged and change nothing)
    cloudrun_endpoint: str | None = None
    projects: Annotated[list[str], NoDecode] = Field(default_factory=list)
    regions: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # profiles (None = the file shipped with gatehouse)
    profiles_file: Path | None = None
    default_profile: str | None = None

    # Firestore: leases and per-service status
    firestore_project: str | None = None
    firestore_database: str = "(default)"
    lease_seconds: float = Field(default=120.0, gt=0)

    # transient failures of older events are acknowledged: the nightly reconcile converges instead
    max_event_age_seconds: float = Field(default=3600.0, gt=0)

    # Cloud Run jobs that fleet-wide commands start (projects/P/locations/R/jobs/J)
    reconcile_job: str = ""
    rotate_job: str = ""
    tickets_job: str = ""

    # project id -> number (Secret Manager names secrets by number; Cloud Run often by id)
    project_numbers: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)
    # rotation: read the effective organization policies before creating keys (orgpolicy.googleapis.com)
    read_org_policies: bool = True

    # endpoints of the other Google APIs (None: Google's); the local stack points them at stand-ins
    secretmanager_endpoint: str | None = None
    iam_endpoint: str | None = None
    orgpolicy_endpoint: str | None = None
    # Cloud Logging (`gatehouse history` reads entries.list); None: logging.googleapis.com
    logging_endpoint: str | None = None
    # the bucket the nightly reconcile job publishes inventory.html and inventory.json to ("": none)
    inventory_bucket: str = ""
    # the project whose logs hold gatehouse's entries (default: the first of GATEHOUSE_PROJECTS)
    logging_project: str | None = None
    # Cloud Scheduler: the jobs `gatehouse freeze` pauses and `gatehouse unfreeze` resumes, as ids
    # (deploy/terraform/scheduler.tf names them <name_prefix>-<job>) or full names
    # projects/P/locations/L/jobs/J; ids live in scheduler_project (default: the Firestore project,
    # where Terraform puts them) and scheduler_location (default: the first of GATEHOUSE_REGIONS)
    scheduler_endpoint: str | None = None
    scheduler_project: str | None = None
    scheduler_location: str | None = None
    scheduler_freeze_jobs: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["gatehouse-rotate-credentials", "gatehouse-rollout-tick"]
    )
    # IAM Credentials (ID tokens minted as the proxy service account to read service-path specs)
    iamcredentials_endpoint: str | None = None
    # local stack only: where requests to the services' run.app URLs go (the Cloud Run stand-in
    # answers them by Host header); None: the service URL itself, over HTTPS
    service_endpoint: str | None = None

    # local stack: endpoints above point at stand-ins, calls go out without credentials
    anonymous_credentials: bool = False

    # retries inside one process (Pub/Sub and Cloud Run retry the rest)
    retry_attempts: int = Field(default=5, ge=1, le=20)
    retry_max_wait_seconds: float = Field(default=20.0, gt=0)
    http_timeout_seconds: float = Field(default=30.0, gt=0)

    @field_validator("apigee_environments", "projects", "regions", "scheduler_freeze_jobs", mode="before")
    @classmethod
    def _csv(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("project_numbers", mode="before")
    @classmethod
    def _numbers(cls, value: object) -> object:
        return _pairs(value, "project=number")

    @field_validator("apigee_environments")
    @classmethod
    def _env_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not _ENV_NAME.match(name):
                raise ValueError(f"invalid Apigee environment name {name!r}")
        return value

    @field_validator("owner_id")
    @classmethod
    def _owner(cls, value: str) -> str:
        if not _OWNER_ID.match(value):
            raise ValueError(
                "owner_id must be 1-40 characters of lowercase letters, digits, '-' or '_', "
                "starting with a letter (it is written as an Apigee label value)"
            )
        return value

    def out_of_scope(self, project: str, region: str) -> str | None:
        """Why ``project``/``region`` is outside GATEHOUSE_PROJECTS x GATEHOUSE_REGIONS (None: inside).
        An empty list admits nothing: with an organization or folder log sink, the scope is the only
        limit. A project number counts as its project when GATEHOUSE_PROJECT_NUMBERS maps it."""
        numbers = {self.project_numbers[p] for p in self.projects if p in self.project_numbers}
        if project not in self.projects and project not in numbers:
            return f"project {project} is not in GATEHOUSE_PROJECTS ({', '.join(self.projects) or 'empty'})"
        if region not in self.regions:
            return f"region {region} is not in GATEHOUSE_REGIONS ({', '.join(self.regions) or 'empty'})"
        return None


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment; raise :class:`InputError` with every problem listed."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(
            f"GATEHOUSE_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}" for err in exc.errors()
        )
        raise InputError(f"invalid settings: {problems}") from None


class TicketsConfig(BaseSettings):
    """Where the tickets job reads alerts and writes tickets (``GATEHOUSE_TICKETS_*``)."""

    model_config = SettingsConfigDict(env_prefix="GATEHOUSE_TICKETS_", frozen=True, extra="ignore")

    # the pull subscription on the alerts topic (projects/P/subscriptions/S)
    subscription: str = ""
    tracker: Literal["github", "jira"] = "github"
    # github: owner/name; jira: the project key
    target: str = ""
    # github: the API base (GitHub Enterprise); jira: https://your-site.atlassian.net, or with a scoped
    # token https://api.atlassian.com/ex/jira/{cloudId} (then jira_browse_url is required)
    tracker_url: str | None = None
    jira_email: str = ""
    # jira: where ticket links point when tracker_url is the api.atlassian.com/ex/jira/{cloudId}
    # gateway (scoped tokens), e.g. https://your-site.atlassian.net; required then
    jira_browse_url: str = ""
    # Secret Manager secret holding the tracker token: projects/P/secrets/S[/versions/V]
    token_secret: str = ""
    max_new_per_hour: int = Field(default=10, ge=0)
    reopen_window_days: float = Field(default=7.0, ge=0)
    wontfix_worsen_factor: float = Field(default=2.0, gt=1)
    fingerprint_fields: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["project", "environment", "proxy", "family", "proposal"]
    )
    # tickets also for proxies this installation did not create (no gatehouse owner label)
    include_unowned_proxies: bool = False
    # primary region -> failover region proposed for the second TargetServer (a=b,c=d)
    failover_regions: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)

    @field_validator("fingerprint_fields", mode="before")
    @classmethod
    def _csv(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("failover_regions", mode="before")
    @classmethod
    def _regions(cls, value: object) -> object:
        return _pairs(value, "primary=failover region (europe-west1=europe-west4)")


def load_tickets_config() -> TicketsConfig:
    try:
        return TicketsConfig()
    except ValidationError as exc:
        problems = "; ".join(
            f"GATEHOUSE_TICKETS_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
            for err in exc.errors()
        )
        raise InputError(f"invalid tickets settings: {problems}") from None
