"""Composition root: build adapters and use cases from settings.

Only entry points (functions/, jobs/, gatehouse.cli) call this. Clients are created on first use, not at
import, so a cold start pays only for what the first event needs.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from gatehouse.config import Settings, TicketsConfig
from gatehouse.errors import InputError

if TYPE_CHECKING:
    from gatehouse.adapters.apigee import ApigeeClient
    from gatehouse.adapters.cloudrun import CloudRunClient, CloudRunJobs
    from gatehouse.adapters.firestore import FirestoreCoordinator
    from gatehouse.adapters.specs import SpecReader
    from gatehouse.registration.service import Registrar
    from gatehouse.rotation.ports import RotationPorts
    from gatehouse.rotation.settings import RotationSettings
    from gatehouse.tickets.ports import TicketPorts
    from gatehouse.tickets.settings import TicketSettings


def apigee(settings: Settings) -> ApigeeClient:
    from gatehouse.adapters.apigee import ApigeeClient

    return ApigeeClient(
        settings.apigee_org,
        endpoint=settings.apigee_endpoint,
        anonymous=settings.anonymous_credentials,
        calls_per_minute=settings.apigee_calls_per_minute,
        retry_attempts=settings.retry_attempts,
        retry_max_wait=settings.retry_max_wait_seconds,
        timeout=settings.http_timeout_seconds,
    )


def cloudrun(settings: Settings) -> CloudRunClient:
    from gatehouse.adapters.cloudrun import CloudRunClient

    return CloudRunClient(
        endpoint=settings.cloudrun_endpoint,
        anonymous=settings.anonymous_credentials,
        retry_attempts=settings.retry_attempts,
        retry_max_wait=settings.retry_max_wait_seconds,
        timeout=settings.http_timeout_seconds,
    )


def jobs(settings: Settings) -> CloudRunJobs:
    from gatehouse.adapters.cloudrun import CloudRunJobs

    return CloudRunJobs(
        endpoint=settings.cloudrun_endpoint,
        anonymous=settings.anonymous_credentials,
        timeout=settings.http_timeout_seconds,
    )


def firestore_project(settings: Settings) -> str | None:
    return (
        settings.firestore_project
        or os.environ.get("GOOGLE_CLOUD_PROJECT")
        or (settings.projects[0] if settings.projects else None)
    )


def coordinator(settings: Settings) -> FirestoreCoordinator:
    from gatehouse.adapters.firestore import FirestoreCoordinator

    return FirestoreCoordinator(firestore_project(settings), settings.firestore_database)


def registrar(settings: Settings) -> Registrar:
    from gatehouse.profiles import parse_profiles, read_profiles_text
    from gatehouse.registration.service import Registrar

    text, source = read_profiles_text(settings.profiles_file)
    profiles = parse_profiles(text, source=source)
    pick = fleet_resolver(settings, text=text, profiles=profiles)
    return Registrar(
        settings,
        apigee(settings),
        cloudrun(settings),
        coordinator(settings),
        profiles,
        specs=spec_reader(settings),
        config_for=pick,
        before_apply=pick.record_running,
    )


def spec_reader(settings: Settings) -> SpecReader:
    """Reads services' OpenAPI specs; builds no client until a spec is read."""
    from gatehouse.adapters.specs import SpecReader

    return SpecReader(
        settings.proxy_service_account,
        iamcredentials_endpoint=settings.iamcredentials_endpoint,
        service_endpoint=settings.service_endpoint,
        anonymous=settings.anonymous_credentials,
        retry_attempts=settings.retry_attempts,
        retry_max_wait=settings.retry_max_wait_seconds,
        timeout=settings.http_timeout_seconds,
    )


def fleet_resolver(settings: Settings, *, text: str | None = None, profiles: Any = None) -> Any:
    """``Registrar.config_for``: the configuration each proxy renders with, read from the rollout
    store once per process call (a fleet change never reaches a proxy by a registration); its
    ``record_running`` records the running configuration on a process's first deploy."""
    from gatehouse.adapters.firestore import FirestoreRolloutStore
    from gatehouse.rollouts.engine import resolver

    store = FirestoreRolloutStore(firestore_project(settings), settings.firestore_database)
    # the registrar's own file text and parse, when it has them: the file is read and parsed once
    return resolver(store, fleet_config(settings, text=text), profiles=profiles)


def secretmanager_client(settings: Settings) -> Any:
    """The official Secret Manager client, pointed at the stand-in on the local stack."""
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import secretmanager

    options = (
        ClientOptions(api_endpoint=settings.secretmanager_endpoint)
        if settings.secretmanager_endpoint
        else None
    )
    credentials = AnonymousCredentials() if settings.anonymous_credentials else None  # type: ignore[no-untyped-call]
    return secretmanager.SecretManagerServiceClient(
        credentials=credentials, transport="rest", client_options=options
    )


def ticket_settings(config: TicketsConfig, settings: Settings) -> TicketSettings:
    """The tickets job's settings; ``settings`` gives the Apigee organization and owner id (required:
    without the owner id the job would ticket no proxy at all)."""
    from gatehouse.tickets.settings import JIRA_BODY_LIMIT, TicketSettings

    extra: dict[str, Any] = {"max_body_chars": JIRA_BODY_LIMIT} if config.tracker == "jira" else {}
    extra.update(apigee_org=settings.apigee_org, owner_id=settings.owner_id)
    return TicketSettings(
        include_unowned_proxies=config.include_unowned_proxies,
        fingerprint_fields=tuple(config.fingerprint_fields),  # type: ignore[arg-type]
        max_new_tickets_per_hour=config.max_new_per_hour,
        reopen_window_seconds=config.reopen_window_days * 86400,
        wontfix_worsen_factor=config.wontfix_worsen_factor,
        failover_regions=dict(config.failover_regions),
        **extra,
    )


def tracker(settings: Settings, config: TicketsConfig) -> Any:
    from gatehouse.adapters.trackers import GITHUB_API, tracker_from_settings

    if not config.target or not config.token_secret:
        raise InputError("the tickets job needs GATEHOUSE_TICKETS_TARGET and GATEHOUSE_TICKETS_TOKEN_SECRET")
    return tracker_from_settings(
        config.tracker,
        token_secret=config.token_secret,
        secrets_client_factory=lambda: secretmanager_client(settings),
        github_repo=config.target,
        github_api=config.tracker_url or GITHUB_API,
        jira_url=config.tracker_url or "",
        jira_project=config.target,
        jira_email=config.jira_email,
        jira_browse_url=config.jira_browse_url,
    )


def ticket_ports(settings: Settings, config: TicketsConfig) -> TicketPorts:
    from gatehouse.adapters.apigee_analytics import ApigeeAnalytics
    from gatehouse.adapters.ledger import FirestoreLedger
    from gatehouse.adapters.pubsub import PubSubMessages
    from gatehouse.tickets.ports import TicketPorts

    if not config.subscription:
        raise InputError(
            "the tickets job needs GATEHOUSE_TICKETS_SUBSCRIPTION (the alerts pull subscription)"
        )
    analytics = ApigeeAnalytics(apigee(settings))
    return TicketPorts(
        messages=PubSubMessages(config.subscription),
        ledger=FirestoreLedger(firestore_project(settings), settings.firestore_database),
        tracker=tracker(settings, config),
        stats=analytics,
        bundles=analytics,
    )


class SystemClock:
    """The rotation ports' clock: timezone-aware UTC now."""

    def now(self) -> datetime:
        return datetime.now(UTC)


def rotation_ports(settings: Settings, rotation: RotationSettings) -> RotationPorts:
    from gatehouse.adapters.consumers import CloudRunConsumers
    from gatehouse.adapters.iam import IamKeyAdmin
    from gatehouse.adapters.orgpolicy import NoOrgPolicies, OrgPolicyReader
    from gatehouse.adapters.secretmanager import SecretManagerStore
    from gatehouse.rotation.ports import RotationPorts

    common: dict[str, Any] = {
        "anonymous": settings.anonymous_credentials,
        "retry_attempts": settings.retry_attempts,
        "retry_max_wait": settings.retry_max_wait_seconds,
        "timeout": settings.http_timeout_seconds,
    }
    policies: Any = (
        OrgPolicyReader(endpoint=settings.orgpolicy_endpoint or "https://orgpolicy.googleapis.com", **common)
        if settings.read_org_policies
        else NoOrgPolicies()
    )
    consumers = (
        CloudRunConsumers(
            rotation.projects or settings.projects,
            settings.regions,
            project_numbers=settings.project_numbers,
            endpoint=settings.cloudrun_endpoint,
            **common,
        )
        if settings.regions
        else None
    )
    exchange = None
    if rotation.token_exchange:
        from gatehouse.adapters.tokens import GoogleTokenExchange

        exchange = GoogleTokenExchange(scopes=("https://www.googleapis.com/auth/cloud-platform",))
    return RotationPorts(
        secrets=SecretManagerStore(endpoint=settings.secretmanager_endpoint, **common),
        keys=IamKeyAdmin(endpoint=settings.iam_endpoint or "https://iam.googleapis.com", **common),
        policies=policies,
        clock=SystemClock(),
        consumers=consumers,
        token_exchange=exchange,
    )


def inventory(
    settings: Settings,
    *,
    with_tickets: bool = True,
    live_states: bool = False,
    workers: int = 8,
    progress: Any = None,
) -> Any:
    """Read the fleet and build its :class:`gatehouse.inventory.model.Inventory`.

    Rotation targets come from ``GATEHOUSE_ROTATION_*`` settings (projects default to
    GATEHOUSE_PROJECTS); tickets from the tracker when the tickets settings name one."""
    from gatehouse.adapters.iam import IamKeyAdmin
    from gatehouse.adapters.secretmanager import SecretManagerStore
    from gatehouse.config import load_tickets_config
    from gatehouse.inventory.gather import InventoryPorts, Scope, gather
    from gatehouse.inventory.model import Context, build
    from gatehouse.profiles import load_profiles
    from gatehouse.rotation.settings import RotationSettings

    rotation = RotationSettings.from_env(os.environ)
    common: dict[str, Any] = {
        "anonymous": settings.anonymous_credentials,
        "retry_attempts": settings.retry_attempts,
        "retry_max_wait": settings.retry_max_wait_seconds,
        "timeout": settings.http_timeout_seconds,
    }
    tickets = None
    if with_tickets:
        config = load_tickets_config()
        if config.target and config.token_secret:
            tickets = tracker(settings, config)
    ports = InventoryPorts(
        apigee=apigee(settings),
        cloudrun=cloudrun(settings),
        coordinator=coordinator(settings),
        secrets=SecretManagerStore(endpoint=settings.secretmanager_endpoint, **common),
        keys=IamKeyAdmin(endpoint=settings.iam_endpoint or "https://iam.googleapis.com", **common),
        tickets=tickets,
    )
    scope = Scope(
        projects=tuple(settings.projects),
        regions=tuple(settings.regions),
        owner_id=settings.owner_id,
        proxy_service_account=settings.proxy_service_account,
        project_numbers=dict(settings.project_numbers),
    )
    snapshot = gather(
        ports,
        scope,
        now=datetime.now(UTC),
        workers=workers,
        live_states=live_states,
        progress=progress,
        secret_projects=rotation.projects or scope.projects,  # where the rotation job looks
    )
    context = Context(
        organization=settings.apigee_org,
        owner_id=settings.owner_id,
        proxy_service_account=settings.proxy_service_account,
        profiles=load_profiles(settings.profiles_file),
        default_environments=tuple(settings.apigee_environments),
        project_numbers=dict(settings.project_numbers),
        rotation=rotation,
    )
    return build(snapshot, context)


def fleet_config(settings: Settings, *, text: str | None = None) -> Any:
    """The fleet configuration this process would render with (its profiles file and settings);
    ``text``: the profiles file as already read."""
    from gatehouse.bundle import RENDER_VERSION
    from gatehouse.profiles import read_profiles_text
    from gatehouse.rollouts.fleet import FleetConfig, bundle_settings

    if text is None:
        text, _ = read_profiles_text(settings.profiles_file)
    return FleetConfig(text, RENDER_VERSION, bundle_settings(settings.owner_id))


def rollout_engine(settings: Settings) -> Any:
    """The rollout engine: Firestore state, registration for deploys, grouped Apigee stats, the
    tickets tracker when the tickets settings name one (else halts are only logged)."""
    from gatehouse.adapters.apigee_analytics import ApigeeAnalytics
    from gatehouse.adapters.firestore import FirestoreRolloutStore
    from gatehouse.config import load_tickets_config
    from gatehouse.registration.service import Registrar
    from gatehouse.rollouts.deployer import RegistrarDeployer, TrackerTickets
    from gatehouse.rollouts.engine import RolloutEngine, settings_from_env

    client = apigee(settings)
    run = cloudrun(settings)
    coord = coordinator(settings)
    specs = spec_reader(settings)  # a fleet change redeploys services with specs too

    def registrar_for(config: Any) -> Registrar:
        return Registrar(
            settings.model_copy(update={"owner_id": config.owner_id}),
            client,
            run,
            coord,
            config.profiles(),
            specs=specs,
        )

    config = load_tickets_config()
    tickets: Any = (
        TrackerTickets(tracker(settings, config))
        if config.target and config.token_secret
        else _LoggedTickets()
    )
    return RolloutEngine(
        FirestoreRolloutStore(firestore_project(settings), settings.firestore_database),
        coord,
        RegistrarDeployer(client, registrar_for, settings.proxy_service_account),
        ApigeeAnalytics(client),
        tickets,
        settings=settings_from_env(os.environ),
    )


class _LoggedTickets:
    """Without a tracker a halt is still recorded in the rollout and logged at ERROR."""

    def open_once(self, label: str, title: str, body: str) -> str:
        from gatehouse.logging import event, get_logger

        event(get_logger("rollouts"), title, level=40, label=label, body=body[:4000])
        return f"log:{label}"


def rollout_tick(settings: Settings, *, accept_inconclusive: bool = False) -> Any:
    """The scheduled tick: start a rollout when this process's configuration differs from the one
    the fleet runs (and none is active), then move the active one on."""
    from gatehouse.registration.plan import ServiceRef
    from gatehouse.rollouts.deployer import changed_members
    from gatehouse.rollouts.model import ACTIVE

    engine = rollout_engine(settings)
    present = fleet_config(settings)
    running = engine.running(present)
    active = engine.current()
    if running.id != present.id and (active is None or active.state not in ACTIVE):
        if not settings.projects or not settings.regions:
            raise InputError("starting a rollout needs GATEHOUSE_PROJECTS and GATEHOUSE_REGIONS")
        services: dict[Any, dict[str, Any]] = {}
        for project in settings.projects:
            for region in settings.regions:
                for page in engine.deployer.registrar_for(running).cloudrun.list_services(project, region):
                    for doc in page:
                        name = str(doc.get("name", "")).rsplit("/", 1)[-1]
                        services[ServiceRef(project, region, name)] = doc
        registrar_for = engine.deployer.registrar_for
        engine.start(present, changed_members(services, registrar_for(running), registrar_for(present)))
    return engine.tick(accept_inconclusive=accept_inconclusive)


def freeze_jobs(settings: Settings) -> list[str]:
    """The full names of the Scheduler jobs a freeze pauses (GATEHOUSE_SCHEDULER_*); InputError when
    they cannot be named, or when the calls would go to Google without credentials (a local stack
    started before it had a Scheduler stand-in)."""
    from gatehouse.rollouts.freeze import job_names

    ids = settings.scheduler_freeze_jobs
    project = settings.scheduler_project or firestore_project(settings)
    location = settings.scheduler_location or (settings.regions[0] if settings.regions else None)
    if any(not i.startswith("projects/") for i in ids) and not (project and location):
        raise InputError(
            "a freeze pauses Scheduler jobs: set GATEHOUSE_SCHEDULER_LOCATION (or GATEHOUSE_REGIONS) and "
            "GATEHOUSE_SCHEDULER_PROJECT (or GATEHOUSE_FIRESTORE_PROJECT), or name the jobs in full in "
            "GATEHOUSE_SCHEDULER_FREEZE_JOBS"
        )
    if settings.anonymous_credentials and not settings.scheduler_endpoint and ids:
        raise InputError(
            "GATEHOUSE_SCHEDULER_ENDPOINT is not set but the credentials are anonymous: a local stack "
            "started by an older gatehouse has no Scheduler stand-in; restart it (`gatehouse local down`, "
            "then `gatehouse local up`)"
        )
    return job_names(ids, project or "", location or "")


def scheduler_jobs(settings: Settings) -> Any:
    """The ``SchedulerJobs`` port on google-cloud-scheduler (imported here, by freeze only)."""
    from gatehouse.adapters.scheduler import CloudSchedulerJobs

    return CloudSchedulerJobs(
        endpoint=settings.scheduler_endpoint,
        anonymous=settings.anonymous_credentials,
        retry_attempts=settings.retry_attempts,
        retry_max_wait=settings.retry_max_wait_seconds,
        timeout=settings.http_timeout_seconds,
    )


def freeze(settings: Settings, until: float, reason: str) -> list[Any]:
    """Record (``until`` > now) a freeze in the rollout store and pause the Scheduler jobs it holds,
    or lift it (0) and resume the jobs it paused; the rollout tick and the scheduled rotation run
    hold while it lasts. Returns one ``JobResult`` per job."""
    import getpass

    from gatehouse.adapters.firestore import FirestoreRolloutStore
    from gatehouse.rollouts import freeze as freezing

    names = freeze_jobs(settings) if until else []
    store = FirestoreRolloutStore(firestore_project(settings), settings.firestore_database)
    jobs = scheduler_jobs(settings)
    try:
        if not until:
            return freezing.unfreeze(store, jobs)
        return freezing.freeze(store, jobs, names, until=until, reason=reason, by=getpass.getuser())
    finally:
        jobs.close()


def freeze_record(settings: Settings) -> Any:
    """The freeze document, active or ended (an ended one may still hold paused jobs), or None."""
    from gatehouse.adapters.firestore import FirestoreRolloutStore
    from gatehouse.rollouts.freeze import record

    return record(FirestoreRolloutStore(firestore_project(settings), settings.firestore_database))


def frozen(settings: Settings) -> Any:
    """The active freeze (``gatehouse freeze``), or None. A store that cannot be read holds
    nothing: the freeze is an operator's hold, and rotation must not stop because Firestore is down."""
    import time

    from gatehouse.errors import GatehouseError
    from gatehouse.rollouts.model import Freeze

    try:
        from gatehouse.adapters.firestore import FirestoreRolloutStore

        doc = (
            FirestoreRolloutStore(firestore_project(settings), settings.firestore_database).get("fleet") or {}
        ).get("freeze")
    except (GatehouseError, OSError, ValueError) as exc:
        from gatehouse.logging import event, get_logger

        event(get_logger("rollouts"), "freeze not readable; not holding", level=30, error=str(exc))
        return None
    if not isinstance(doc, dict):
        return None
    found = Freeze.from_dict(doc)
    return found if found.active(time.time()) else None
