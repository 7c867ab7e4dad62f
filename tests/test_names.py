"""Short names a person types on the command line, resolved when the settings make them unique."""

from __future__ import annotations

import pytest

from gatehouse.errors import InputError
from gatehouse.names import SECRET_FORM, SERVICE_FORM, secret_name, service_key, service_selector

ONE = (["acme-prod"], ["europe-west1"])
TWO_REGIONS = (["acme-prod"], ["europe-west1", "us-east1"])


def test_a_bare_service_name_resolves_when_one_project_and_one_region_are_swept() -> None:
    assert service_key("orders", *ONE) == "projects/acme-prod/locations/europe-west1/services/orders"


def test_a_full_service_name_is_kept_whatever_the_settings() -> None:
    full = "projects/other/locations/us-east1/services/orders"
    assert service_key(full, [], []) == full
    assert service_selector(full, *TWO_REGIONS) == (full, True)


@pytest.mark.parametrize("settings", [TWO_REGIONS, ([], []), (["a-prod", "b-prod"], ["europe-west1"])])
def test_an_ambiguous_bare_name_asks_for_the_full_form(settings: tuple[list[str], list[str]]) -> None:
    with pytest.raises(InputError, match="ambiguous") as raised:
        service_key("orders", *settings)
    assert SERVICE_FORM in str(raised.value)


@pytest.mark.parametrize(
    "name",
    [
        "projects/acme-prod/services/orders",
        "projects/acme-prod/locations/europe-west1/services/Orders",
        "projects//locations/europe-west1/services/orders",
        "a/b",
        "orders service",
        "",
    ],
)
def test_malformed_service_names_name_the_expected_form(name: str) -> None:
    with pytest.raises(InputError) as raised:
        service_key(name, *ONE)
    assert SERVICE_FORM in str(raised.value)


def test_status_accepts_a_project_or_a_region_as_a_prefix() -> None:
    assert service_selector("projects/acme-prod", *TWO_REGIONS) == ("projects/acme-prod/", False)
    assert service_selector("projects/acme-prod/locations/us-east1", *TWO_REGIONS) == (
        "projects/acme-prod/locations/us-east1/",
        False,
    )
    with pytest.raises(InputError):
        service_key("projects/acme-prod", *ONE)


def test_a_bare_secret_id_resolves_when_rotation_searches_one_project() -> None:
    assert secret_name("tracker-token", ["acme-prod"]) == "projects/acme-prod/secrets/tracker-token"
    assert secret_name("projects/123/secrets/tracker-token", []) == "projects/123/secrets/tracker-token"


@pytest.mark.parametrize(
    ("name", "projects"), [("tracker-token", ["a-prod", "b-prod"]), ("tracker-token", [])]
)
def test_an_ambiguous_secret_id_asks_for_the_full_form(name: str, projects: list[str]) -> None:
    with pytest.raises(InputError, match="ambiguous") as raised:
        secret_name(name, projects)
    assert SECRET_FORM in str(raised.value)


@pytest.mark.parametrize(
    "name", ["projects/acme-prod/secrets/x/versions/1", "projects//secrets/x", "a/b", "token with spaces"]
)
def test_malformed_secret_names_name_the_expected_form(name: str) -> None:
    with pytest.raises(InputError) as raised:
        secret_name(name, ["acme-prod"])
    assert SECRET_FORM in str(raised.value)
