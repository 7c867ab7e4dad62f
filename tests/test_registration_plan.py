"""The registration planner as tables: (desired, current, policy) -> result and actions."""

from __future__ import annotations

import pytest

from gatehouse.config import Policy
from gatehouse.ports import Deployment, ProxyInfo
from gatehouse.registration.plan import (
    FAILED_LABEL,
    HASH_LABEL,
    NEW,
    OWNER_LABEL,
    REVISION_LABEL,
    Current,
    Deploy,
    DesiredProxy,
    GrantInvoker,
    ImportBundle,
    LabelProxy,
    PathClaim,
    Prune,
    RevokeInvoker,
    ServiceRef,
    Undeploy,
    plan,
)

REF = ServiceRef("shop-prod", "europe-west1", "orders")
NAME = "orders-1234abcd"
HASH = "a" * 64
OTHER_HASH = "b" * 64
OWNER = "team-gw"


def desired(envs: tuple[str, ...] = ("test",), content_hash: str = HASH) -> DesiredProxy:
    return DesiredProxy(NAME, envs, content_hash, "/orders", "apikey")


def ours(revision: int = 3, content_hash: str = HASH, **extra: str) -> dict[str, str]:
    return {OWNER_LABEL: OWNER, HASH_LABEL: content_hash[:48], REVISION_LABEL: str(revision), **extra}


def proxy(labels: dict[str, str], revisions: tuple[int, ...] = (1, 2, 3)) -> ProxyInfo:
    return ProxyInfo(NAME, labels, revisions)


def deployed(*pairs: tuple[str, int]) -> tuple[Deployment, ...]:
    return tuple(Deployment(env, NAME, rev) for env, rev in pairs)


def run(want: DesiredProxy | None, current: Current, policy: Policy = Policy.UPSERT_ONLY, **kw: object):
    return plan(REF, NAME, want, current, owner_id=OWNER, policy=policy, keep_revisions=5, **kw)  # type: ignore[arg-type]


def test_new_proxy_is_created_labelled_and_deployed_everywhere() -> None:
    p = run(desired(("prod", "test")), Current(None))
    assert p.result == "create"
    assert p.actions[:2] == (GrantInvoker(), ImportBundle())
    label = p.actions[2]
    assert isinstance(label, LabelProxy)
    assert label.labels[OWNER_LABEL] == OWNER and label.labels[HASH_LABEL] == HASH[:48]
    assert label.labels["gatehouse-service"] == "orders" and label.labels["gatehouse-project"] == "shop-prod"
    assert p.actions[3:] == (Deploy("prod", NEW, None), Deploy("test", NEW, None))


@pytest.mark.parametrize("policy", list(Policy))
def test_unchanged_content_and_deployments_means_zero_writes(policy: Policy) -> None:
    p = run(desired(), Current(proxy(ours()), deployed(("test", 3))), policy)
    assert p.result == "unchanged" and p.actions == () and not p.writes


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ({}, "not created by gatehouse"),
        ({OWNER_LABEL: "someone-else", HASH_LABEL: HASH[:48]}, "owned by 'someone-else'"),
    ],
)
def test_a_proxy_we_do_not_own_is_never_touched(labels: dict[str, str], expected: str) -> None:
    p = run(desired(), Current(proxy(labels), deployed(("test", 1))))
    assert p.result == "conflict" and not p.writes
    assert expected in p.reason and NAME in p.reason


def test_a_crashed_import_of_ours_is_adopted() -> None:
    p = run(desired(), Current(proxy({}, (1,)), adoptable=True))
    assert p.result == "update" and ImportBundle() in p.actions


def test_changed_content_imports_a_new_revision_with_override_and_prunes() -> None:
    p = run(desired(content_hash=OTHER_HASH), Current(proxy(ours()), deployed(("test", 3))))
    assert p.result == "update"
    assert Deploy("test", NEW, 3) in p.actions
    assert p.actions[-1] == Prune(5, (1, 2, 3), ())


def test_create_only_leaves_an_existing_proxy_alone() -> None:
    p = run(
        desired(content_hash=OTHER_HASH), Current(proxy(ours()), deployed(("test", 3))), Policy.CREATE_ONLY
    )
    assert p.result == "skip" and not p.writes


def test_a_new_environment_redeploys_the_same_revision_without_import() -> None:
    p = run(desired(("prod", "test")), Current(proxy(ours()), deployed(("test", 3))))
    assert p.result == "redeploy"
    assert p.actions == (GrantInvoker(), Deploy("prod", 3, None))


@pytest.mark.parametrize(
    ("policy", "result", "undeploys"),
    [(Policy.SYNC, "redeploy", True), (Policy.UPSERT_ONLY, "unchanged", False)],
)
def test_an_environment_dropped_from_the_annotation_is_undeployed_only_under_sync(
    policy: Policy, result: str, undeploys: bool
) -> None:
    p = run(desired(("test",)), Current(proxy(ours()), deployed(("prod", 3), ("test", 3))), policy)
    assert p.result == result
    assert (Undeploy("prod", 3) in p.actions) is undeploys
    if not undeploys:
        assert "still deployed in prod" in p.reason


def test_a_revision_that_failed_is_not_retried_until_the_service_changes() -> None:
    labels = ours(revision=4, **{FAILED_LABEL: "4"})
    p = run(desired(), Current(proxy(labels, (1, 2, 3, 4)), deployed(("test", 3))))
    assert p.result == "skip" and "failed to deploy" in p.reason
    changed = run(
        desired(content_hash=OTHER_HASH), Current(proxy(labels, (1, 2, 3, 4)), deployed(("test", 3)))
    )
    assert changed.result == "update"


@pytest.mark.parametrize(
    ("policy", "exists", "result", "actions"),
    [
        (Policy.SYNC, False, "unregister", (Undeploy("test", 3),)),
        (Policy.SYNC, True, "unregister", (Undeploy("test", 3), RevokeInvoker())),
        (Policy.UPSERT_ONLY, False, "skip", ()),
        (Policy.CREATE_ONLY, False, "skip", ()),
    ],
)
def test_a_deleted_or_opted_out_service(policy: Policy, exists: bool, result: str, actions: tuple) -> None:
    p = run(
        None,
        Current(proxy(ours()), deployed(("test", 3))),
        policy,
        absent_reason="service deleted" if not exists else "label apigee-expose removed",
        service_exists=exists,
    )
    assert p.result == result and p.actions == actions


def test_deleting_a_service_never_touches_a_proxy_of_someone_else() -> None:
    p = run(
        None,
        Current(proxy({}), deployed(("test", 1))),
        Policy.SYNC,
        absent_reason="service deleted",
        service_exists=False,
    )
    assert p.result == "skip" and not p.writes and "not owned" in p.reason


def test_absent_service_without_proxy_is_a_no_op() -> None:
    p = run(None, Current(None), Policy.SYNC, absent_reason="service deleted", service_exists=False)
    assert p.result == "unchanged" and not p.writes


def test_an_unlabelled_revision_of_ours_holding_the_content_is_labelled_not_imported_again() -> None:
    """An outage while labelling left revisions 1-3 of ours, none labelled; 2 holds this content."""
    current = Current(proxy({}, (1, 2, 3)), adoptable=True, unlabelled={1: HASH, 2: HASH, 3: OTHER_HASH})
    p = run(desired(("prod", "test")), current)
    assert p.result == "create" and p.writes
    assert not any(isinstance(a, ImportBundle) for a in p.actions)
    label = p.actions[1]
    assert isinstance(label, LabelProxy) and label.labels[REVISION_LABEL] == "2"
    assert p.actions[2:4] == (Deploy("prod", 2, None), Deploy("test", 2, None))
    assert p.actions[-1] == Prune(5, (1, 2, 3), (2,), (1, 3))
    # under create-only too: finishing a create is not changing an existing proxy
    assert run(desired(), current, Policy.CREATE_ONLY).result == "create"


def test_unlabelled_revisions_of_ours_without_the_content_are_pruned_after_a_new_import() -> None:
    current = Current(proxy({}, (1, 2)), adoptable=True, unlabelled={1: "", 2: OTHER_HASH})
    p = run(desired(), current)
    assert p.result == "update" and ImportBundle() in p.actions
    assert p.actions[-1] == Prune(5, (1, 2), (), (1, 2))


def test_an_owned_proxy_reuses_a_newer_unlabelled_revision_and_prunes_duplicates() -> None:
    """Labelled revision 3; 4 and 5 hold the new content (an import whose answer was lost, twice)."""
    current = Current(
        proxy(ours(), (1, 2, 3, 4, 5)), deployed(("test", 3)), unlabelled={4: OTHER_HASH, 5: OTHER_HASH}
    )
    p = run(desired(content_hash=OTHER_HASH), current)
    assert p.result == "update" and not any(isinstance(a, ImportBundle) for a in p.actions)
    assert Deploy("test", 5, 3) in p.actions
    assert p.actions[-1] == Prune(5, (1, 2, 3, 4, 5), (5,), (4,))
    # once labelled, a leftover duplicate is deleted and nothing else
    settled = Current(
        proxy(ours(5, OTHER_HASH), (3, 4, 5)), deployed(("test", 5)), unlabelled={4: OTHER_HASH}
    )
    tidy = run(desired(content_hash=OTHER_HASH), settled)
    assert tidy.result == "unchanged" and tidy.actions == (Prune(5, (), (), (4,)),)


def test_an_import_carries_what_finding_a_lost_answer_needs() -> None:
    p = run(desired(content_hash=OTHER_HASH), Current(proxy(ours()), deployed(("test", 3))))
    imported = next(a for a in p.actions if isinstance(a, ImportBundle))
    assert imported.content_hash == OTHER_HASH and imported.known == (1, 2, 3)
    created = next(a for a in run(desired(), Current(None)).actions if isinstance(a, ImportBundle))
    assert created.content_hash == HASH and created.known == ()


# -- sub-path takeover: a base path nested under another service's path ----------------------------

ORDERS_KEY = "projects/shop-prod/locations/europe-west1/services/orders-api"
ORDERS_PROXY = "orders-api-0badc0de"


def outer(
    allow: tuple[str, ...] = (), base_path: str = "/v1/orders", envs: tuple[str, ...] = ("test",)
) -> PathClaim:
    """The apikey service 'orders-api' serving /v1/orders, as its contract says."""
    return PathClaim(ORDERS_KEY, ORDERS_PROXY, base_path, envs, allow)


def inner(base_path: str = "/v1/orders/admin", envs: tuple[str, ...] = ("test",)) -> DesiredProxy:
    """This service, with the public profile, asking for a path of its own."""
    return DesiredProxy(NAME, envs, HASH, base_path, "public")


def test_a_public_service_nested_under_an_apikey_services_path_is_a_conflict() -> None:
    p = run(inner(), Current(None), claims=(outer(),))
    assert p.result == "conflict" and p.actions == () and not p.writes
    assert ORDERS_PROXY in p.reason and ORDERS_KEY in p.reason and "/v1/orders" in p.reason
    assert 'gatehouse.dev/allow-subpaths: "/admin"' in p.reason
    # an existing proxy of ours is not updated or redeployed either
    changed = Current(proxy(ours(content_hash=OTHER_HASH)), deployed(("test", 3)))
    assert run(inner(), changed, claims=(outer(),)).result == "conflict"
    new_environment = Current(proxy(ours()), deployed(("test", 3)))
    assert run(inner(envs=("prod", "test")), new_environment, claims=(outer(),)).result == "conflict"


@pytest.mark.parametrize(
    ("allow", "base_path", "result"),
    [
        (("/admin",), "/v1/orders/admin", "create"),
        (("/internal", "/admin"), "/v1/orders/admin", "create"),
        (("/admin",), "/v1/orders/admin/v2", "create"),  # allowing /admin allows what is below it
        (("*",), "/v1/orders/anything/deeper", "create"),
        (("/internal",), "/v1/orders/admin", "conflict"),
        (("/admin/v2",), "/v1/orders/admin", "conflict"),
        (("/admin",), "/v1/orders/*/x", "conflict"),  # a wildcard claims more than /admin
        (("/admin",), "/v1/orders/administration", "conflict"),
    ],
)
def test_the_outer_services_allow_annotation_decides(
    allow: tuple[str, ...], base_path: str, result: str
) -> None:
    assert run(inner(base_path), Current(None), claims=(outer(allow),)).result == result


@pytest.mark.parametrize(
    ("outer_path", "outer_envs", "inner_path", "result"),
    [
        ("/v1/orders", ("test",), "/v1/orders-x", "create"),  # segments, not string prefixes
        ("/v1/orders", ("test",), "/v1/orders-x/admin", "create"),
        ("/v1/orders", ("test",), "/v1/ordersadmin", "create"),
        ("/v1/orders", ("test",), "/v1", "create"),  # the outer one here is this service
        ("/v1/orders", ("test",), "/v2/orders/admin", "create"),
        ("/v1/orders", ("prod",), "/v1/orders/admin", "create"),  # no shared environment
        ("/v1/orders", ("prod", "test"), "/v1/orders/admin", "conflict"),
        ("/v1/*/items", ("test",), "/v1/orders/items/admin", "conflict"),  # wildcards match a segment
        ("/v1/orders", ("test",), "/v1/*/admin", "conflict"),
    ],
)
def test_only_paths_nested_segment_by_segment_in_a_shared_environment_conflict(
    outer_path: str, outer_envs: tuple[str, ...], inner_path: str, result: str
) -> None:
    claim = outer(base_path=outer_path, envs=outer_envs)
    assert run(inner(inner_path), Current(None), claims=(claim,)).result == result


def test_a_wildcard_sub_path_is_only_offered_the_allow_all_value() -> None:
    p = run(inner("/v1/orders/*/x"), Current(None), claims=(outer(),))
    assert p.result == "conflict" and 'gatehouse.dev/allow-subpaths: "*"' in p.reason
    assert '"/*/x"' not in p.reason  # not a value the annotation accepts


def test_the_nearest_enclosing_path_that_does_not_allow_is_named() -> None:
    platform = PathClaim(
        "projects/p/locations/r/services/platform", "platform-1", "/v1", ("test",), ("/orders",)
    )
    p = run(inner(), Current(None), claims=(platform, outer()))
    assert p.result == "conflict" and ORDERS_PROXY in p.reason and "platform-1" not in p.reason
    assert run(inner(), Current(None), claims=(platform, outer(("/admin",)))).result == "create"
    # every enclosing owner must agree: /v1 allows only /orders, not /payments
    other = run(inner("/v1/payments/admin"), Current(None), claims=(platform, outer()))
    assert other.result == "conflict" and "platform-1" in other.reason


def test_a_services_own_claim_and_plans_without_claims_are_not_checked() -> None:
    own = PathClaim(REF.key, NAME, "/v1/orders", ("test",))
    assert run(inner(), Current(None), claims=(own,)).result == "create"
    assert run(inner(), Current(None)).result == "create"
    # a service that is gone or opted out only ever loses routes
    assert run(None, Current(None), claims=(outer(),)).result == "unchanged"
