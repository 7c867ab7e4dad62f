"""Composition root: build adapters and use cases from settings.

Only entry points (functions/, jobs/, shared.cli) call this. Clients are created on first use, not at
import, so a cold start pays only for what the first event needs.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from shared.config import Settings

if TYPE_CHECKING:
    from shared.adapters.apigee import ApigeeClient
    from shared.adapters.cloudrun import CloudRunClient, CloudRunJobs
    from shared.adapters.firestore import FirestoreCoordinator
    from shared.registration.service import Registrar


def apigee(settings: Settings) -> ApigeeClient:
    from shared.adapters.apigee import ApigeeClient

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
    from shared.adapters.cloudrun import CloudRunClient

    return CloudRunClient(
        endpoint=settings.cloudrun_endpoint,
        anonymous=settings.anonymous_credentials,
        retry_attempts=settings.retry_attempts,
        retry_max_wait=settings.retry_max_wait_seconds,
        timeout=settings.http_timeout_seconds,
    )


def jobs(settings: Settings) -> CloudRunJobs:
    from shared.adapters.cloudrun import CloudRunJobs

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
    from shared.adapters.firestore import FirestoreCoordinator

    return FirestoreCoordinator(firestore_project(settings), settings.firestore_database)


def registrar(settings: Settings) -> Registrar:
    from shared.profiles import load_profiles
    from shared.registration.service import Registrar

    profiles = load_profiles(settings.profiles_file)
    return Registrar(settings, apigee(settings), cloudrun(settings), coordinator(settings), profiles)
