"""Who reads a secret (``Consumers``): Cloud Run services and jobs, through google-cloud-run (REST).

The report warns about consumers a rotation may leave behind (a pinned old version, an env var
resolved only at instance start), and with ``roll_consumers`` the job deploys them onto the new
version. Cloud Run has no "who references this secret" query, so every service and job of the
configured projects and regions is listed, one call per page, and their templates are searched:

- ``containers[].env[].valueSource.secretKeyRef{secret, version}`` (``version`` empty means latest);
- ``volumes[].secret{secret, items[{path, version}]}`` mounted by a container's ``volumeMounts``
  (no ``items``: the whole secret appears as ``<mountPath>/<secret id>`` at ``latest``);
- ``secret`` is a short id ``S`` (the consumer's own project) or ``projects/P/secrets/S``.

Secret Manager names secrets with the project NUMBER (``projects/123/secrets/S``) while Cloud Run
names are usually written with the project ID, so references are compared after mapping projects
through ``project_numbers`` (id -> number); without it, a project is compared as written.

The scan is cached for ``cache_seconds`` (an adapter lives for one run, which asks once per target)
and dropped after a roll. ``roll`` re-reads the resource, changes the version of that one
reference (only if it still names the same secret), and updates it with the resource's etag: a
concurrent deploy makes Cloud Run answer ABORTED and the roll fails as a conflict instead of
overwriting someone's change.

A service's ``template.revision`` names the revision that template created (gcloud and the console
always set it). Sending the same name with a changed template is refused (409 ALREADY_EXISTS:
"revision ... with different configuration already exists"), so the roll clears it and Cloud Run
generates a new name. Both refusals are HTTP 409; they are told apart by the ``google.rpc.Status``
code: ABORTED (the etag no longer matches: someone deployed meanwhile) is a ``ConflictError``,
ALREADY_EXISTS a ``PermanentError`` with ``reason="ALREADY_EXISTS"``.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from google.api_core import exceptions as gexc
from google.auth.credentials import Credentials
from google.cloud import run_v2

from gatehouse.adapters.gapic import call, map_google_error, rest_client
from gatehouse.adapters.http import retrying
from gatehouse.errors import ConflictError, NotFoundError, PermanentError
from gatehouse.rotation.ports import ConsumerRef

T = TypeVar("T")
SecretKey = tuple[str, str]  # (project as canonicalised, secret id)


def _when(value: Any) -> datetime | None:
    return datetime.fromtimestamp(value.timestamp(), UTC) if isinstance(value, datetime) else None


def _container_label(container: run_v2.Container, index: int) -> str:
    return str(container.name) or f"#{index}"


def _rpc_status(exc: gexc.GoogleAPICallError) -> str:
    """The ``google.rpc.Status`` code name of an error answer (``error.status`` of the REST body;
    over REST, api_core picks the exception class by HTTP status alone)."""
    response = getattr(exc, "response", None)
    try:
        status = response.json()["error"]["status"] if response is not None else None
    except (ValueError, KeyError, TypeError, AttributeError):
        status = None
    if isinstance(status, str) and status:
        return status
    code = exc.grpc_status_code
    return str(getattr(code, "name", "")) if code is not None else ""


def map_update_error(exc: Exception, what: str) -> Exception:
    """Errors of an update: the two kinds of 409 mean different things to whoever reads the report."""
    if isinstance(exc, gexc.Conflict | gexc.Aborted | gexc.AlreadyExists):
        status = _rpc_status(exc)
        if status == "ALREADY_EXISTS" or isinstance(exc, gexc.AlreadyExists):
            return PermanentError(
                f"{what}: Cloud Run refuses the revision name (it exists with another template): {exc}",
                status=409,
                reason="ALREADY_EXISTS",
            )
        return ConflictError(
            f"{what}: changed concurrently (etag mismatch); not overwritten: {exc}",
            status=409,
            reason=status or "ABORTED",
        )
    return map_google_error(exc, what)


class CloudRunConsumers:
    """The ``gatehouse.rotation.ports.Consumers`` over Cloud Run Admin API v2."""

    def __init__(
        self,
        projects: Sequence[str],
        regions: Sequence[str],
        *,
        project_numbers: Mapping[str, str] | None = None,
        endpoint: str | None = None,
        credentials: Credentials | None = None,
        anonymous: bool = False,
        retry_attempts: int = 5,
        retry_max_wait: float = 20.0,
        timeout: float = 30.0,
        roll_timeout: float = 600.0,
        page_size: int = 500,
        cache_seconds: float = 300.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if not regions:
            raise PermanentError(
                "CloudRunConsumers needs at least one region (Cloud Run has no '-' wildcard)"
            )
        self.services = rest_client(
            run_v2.ServicesClient, endpoint=endpoint, credentials=credentials, anonymous=anonymous
        )
        self.jobs = rest_client(
            run_v2.JobsClient, endpoint=endpoint, credentials=credentials, anonymous=anonymous
        )
        self.projects = tuple(projects)
        self.regions = tuple(regions)
        self.numbers = dict(project_numbers or {})
        self.retry = retrying(retry_attempts, retry_max_wait)
        self.timeout = timeout
        self.roll_timeout = roll_timeout
        self.page_size = page_size
        self.cache_seconds = cache_seconds
        self.monotonic = monotonic
        self._scan: tuple[float, list[tuple[ConsumerRef, SecretKey]]] | None = None

    # -- plumbing ---------------------------------------------------------------------------------

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        return call(self.retry, what, fn)

    def _result(self, operation: Any) -> Any:
        """Wait for a long-running update (Cloud Run answers once the new revision is ready)."""
        return operation.result(timeout=self.roll_timeout)

    def _canon(self, project: str) -> str:
        return self.numbers.get(project, project)

    def secret_key(self, reference: str, own_project: str) -> SecretKey | None:
        """``S`` or ``projects/P/secrets/S`` (as a template or a target writes it) -> comparable key."""
        parts = reference.strip().split("/")
        if len(parts) == 1 and parts[0]:
            return self._canon(own_project), parts[0]
        if len(parts) >= 4 and parts[0] == "projects" and parts[2] == "secrets":
            return self._canon(parts[1]), parts[3]
        return None

    # -- listing ----------------------------------------------------------------------------------

    def _pages(self, what: str, first_page: Callable[[str], tuple[list[Any], str]]) -> Iterator[Any]:
        token = ""
        while True:
            items, token = self._call(what, functools.partial(first_page, token))
            yield from items
            if not token:
                return

    def _list_services(self, parent: str) -> Iterator[run_v2.Service]:
        def page(token: str) -> tuple[list[Any], str]:
            request = run_v2.ListServicesRequest(parent=parent, page_size=self.page_size, page_token=token)
            first = next(
                iter(self.services.list_services(request=request, retry=None, timeout=self.timeout).pages)
            )
            return list(first.services), str(first.next_page_token)

        return self._pages(f"list services in {parent}", page)

    def _list_jobs(self, parent: str) -> Iterator[run_v2.Job]:
        def page(token: str) -> tuple[list[Any], str]:
            request = run_v2.ListJobsRequest(parent=parent, page_size=self.page_size, page_token=token)
            first = next(iter(self.jobs.list_jobs(request=request, retry=None, timeout=self.timeout).pages))
            return list(first.jobs), str(first.next_page_token)

        return self._pages(f"list jobs in {parent}", page)

    def _references(
        self,
        kind: str,
        name: str,
        containers: Iterable[run_v2.Container],
        volumes: Iterable[run_v2.Volume],
        updated: datetime | None,
    ) -> Iterator[tuple[ConsumerRef, SecretKey]]:
        project = name.split("/")[1]
        secret_volumes = [v for v in volumes if v.secret.secret]
        for index, container in enumerate(containers):
            label = _container_label(container, index)
            for env in container.env:
                ref = env.value_source.secret_key_ref
                key = self.secret_key(str(ref.secret), project) if ref.secret else None
                if key:
                    version = str(ref.version) or "latest"
                    yield ConsumerRef(kind, name, label, "env", str(env.name), version, updated), key  # type: ignore[arg-type]
            mounts = {m.name: m for m in container.volume_mounts}
            for volume in secret_volumes:
                mount = mounts.get(volume.name)
                key = self.secret_key(str(volume.secret.secret), project)
                if mount is None or key is None:
                    continue  # a volume no container mounts is never read
                base = str(mount.mount_path).rstrip("/")
                items = [(str(i.path), str(i.version) or "latest") for i in volume.secret.items]
                for path, version in items or [(key[1], "latest")]:
                    yield ConsumerRef(kind, name, label, "volume", f"{base}/{path}", version, updated), key  # type: ignore[arg-type]

    def scan(self) -> list[tuple[ConsumerRef, SecretKey]]:
        """Every secret reference of every service and job in the configured projects and regions."""
        now = self.monotonic()
        if self._scan is not None and now - self._scan[0] < self.cache_seconds:
            return self._scan[1]
        found: list[tuple[ConsumerRef, SecretKey]] = []
        for project in self.projects:
            for region in self.regions:
                parent = f"projects/{project}/locations/{region}"
                for service in self._list_services(parent):
                    template = service.template
                    found += self._references(
                        "service",
                        str(service.name),
                        template.containers,
                        template.volumes,
                        _when(service.update_time),
                    )
                for job in self._list_jobs(parent):
                    task = job.template.template
                    found += self._references(
                        "job", str(job.name), task.containers, task.volumes, _when(job.update_time)
                    )
        self._scan = (now, found)
        return found

    def list_consumers(self, secret: str) -> list[ConsumerRef]:
        target = self.secret_key(secret, "")
        if target is None:
            raise PermanentError(f"{secret!r} is not projects/P/secrets/S")
        return [ref for ref, key in self.scan() if key == target]

    # -- rolling ----------------------------------------------------------------------------------

    def _repoint(
        self,
        consumer: ConsumerRef,
        containers: Sequence[run_v2.Container],
        volumes: Sequence[run_v2.Volume],
        secret: SecretKey,
        version: str,
    ) -> bool:
        """Set ``version`` on the reference ``consumer`` describes, if it still reads ``secret``."""
        project = consumer.name.split("/")[1]
        for index, container in enumerate(containers):
            if _container_label(container, index) != consumer.container:
                continue
            if consumer.via == "env":
                for env in container.env:
                    ref = env.value_source.secret_key_ref
                    if env.name == consumer.detail and self.secret_key(str(ref.secret), project) == secret:
                        ref.version = version
                        return True
                return False
            for mount in container.volume_mounts:
                base = str(mount.mount_path).rstrip("/")
                for volume in volumes:
                    if (
                        volume.name != mount.name
                        or self.secret_key(str(volume.secret.secret), project) != secret
                    ):
                        continue
                    for item in volume.secret.items:
                        if f"{base}/{item.path}" == consumer.detail:
                            item.version = version
                            return True
                    if not volume.secret.items and f"{base}/{secret[1]}" == consumer.detail:
                        volume.secret.items.append(run_v2.VersionToPath(path=secret[1], version=version))
                        return True
        return False

    def roll(self, consumer: ConsumerRef, *, version: str) -> str:
        secret = next((key for ref, key in self.scan() if ref == consumer), None)
        if secret is None:
            raise NotFoundError(
                f"{consumer.name} has no such secret reference ({consumer.via} {consumer.detail})"
            )
        self._scan = None  # whatever happens, the next listing reads again
        if consumer.kind == "service":
            service = self._call(
                f"get service {consumer.name}",
                lambda: self.services.get_service(name=consumer.name, retry=None, timeout=self.timeout),
            )
            template = service.template
            if not self._repoint(consumer, template.containers, template.volumes, secret, version):
                raise NotFoundError(
                    f"{consumer.name} no longer has that reference ({consumer.via} {consumer.detail})"
                )
            template.revision = ""  # the old name belongs to the old template: let Cloud Run name it
            done: run_v2.Service = call(
                self.retry,
                f"update service {consumer.name}",
                lambda: self._result(
                    self.services.update_service(service=service, retry=None, timeout=self.timeout)
                ),
                map_update_error,
            )
            return str(done.latest_created_revision).rsplit("/", 1)[-1] or f"generation {done.generation}"
        job = self._call(
            f"get job {consumer.name}",
            lambda: self.jobs.get_job(name=consumer.name, retry=None, timeout=self.timeout),
        )
        task = job.template.template
        if not self._repoint(consumer, task.containers, task.volumes, secret, version):
            raise NotFoundError(
                f"{consumer.name} no longer has that reference ({consumer.via} {consumer.detail})"
            )
        updated: run_v2.Job = call(
            self.retry,
            f"update job {consumer.name}",
            lambda: self._result(self.jobs.update_job(job=job, retry=None, timeout=self.timeout)),
            map_update_error,
        )
        return f"{consumer.name.rsplit('/', 1)[-1]} generation {updated.generation}"

    def close(self) -> None:
        self.services.transport.close()  # type: ignore[no-untyped-call]
        self.jobs.transport.close()  # type: ignore[no-untyped-call]
