"""The production wiring in deploy/terraform, checked by parsing the HCL (python-hcl2).

Terraform's providers cannot be downloaded everywhere the tests run, so instead of
``terraform validate`` these tests read the configuration and assert what matters: every
subscription a function or job reads dead-letters, the audit-log sink sees both API generations,
push deliveries carry OIDC tokens, schedules are valid cron, no secret value is in Terraform, and
the service-account map in iam.tf is exactly the table in the README. ``terraform fmt`` runs when
Terraform is installed and is skipped (saying so) when it is not; checkov runs from its own venv
(``make test`` installs it there, or point $CHECKOV at one) and must find nothing unjustified.
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hcl2
import pytest

ROOT = Path(__file__).resolve().parents[1]
TF_DIR = ROOT / "deploy" / "terraform"
EXAMPLE_TFVARS = TF_DIR / "examples" / "gatehouse.tfvars"
README = ROOT / "README.md"

CONCERN_FILES = {
    "main.tf",
    "variables.tf",
    "outputs.tf",
    "versions.tf",
    "pubsub.tf",
    "logging.tf",
    "functions.tf",
    "jobs.tf",
    "scheduler.tf",
    "iam.tf",
    "monitoring.tf",
    "firestore.tf",
    "secrets.tf",
    "inventory.tf",
}
SERVICE_ACCOUNTS = {
    "on-run-event",
    "on-command",
    "reconcile",
    "rotate",
    "tickets",
    "scheduler",
    "push-invoker",
    "apigee-proxy",
}
BASIC_ROLES = {"roles/owner", "roles/editor", "roles/viewer"}
SINK_METHODS = (
    "google.cloud.run.v1.Services.CreateService",
    "google.cloud.run.v1.Services.ReplaceService",
    "google.cloud.run.v1.Services.DeleteService",
    "google.cloud.run.v2.Services.CreateService",
    "google.cloud.run.v2.Services.UpdateService",
    "google.cloud.run.v2.Services.DeleteService",
)
SINK_TYPES = ("google_logging_project_sink", "google_logging_folder_sink", "google_logging_organization_sink")

# ---------------------------------------------------------------------------------------------
# parsing helpers
# ---------------------------------------------------------------------------------------------


def _strip_quotes(value: Any) -> Any:
    """python-hcl2 < 8 has no SerializationOptions; normalise its output to the same shape."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    if isinstance(value, dict):
        return {_strip_quotes(k): _strip_quotes(v) for k, v in value.items() if k != "__is_block__"}
    if isinstance(value, list):
        return [_strip_quotes(v) for v in value]
    return value


def _load(path: Path) -> dict[str, Any]:
    text = path.read_text(encoding="utf-8")
    options_cls = getattr(hcl2, "SerializationOptions", None)
    if options_cls is not None:
        options = options_cls(
            strip_string_quotes=True, explicit_blocks=False, preserve_heredocs=False, with_comments=False
        )
        return dict(hcl2.loads(text, serialization_options=options))
    return dict(_strip_quotes(hcl2.loads(text)))


class Config:
    """All .tf files of the module, merged by block type."""

    def __init__(self, directory: Path) -> None:
        self.files = sorted(directory.glob("*.tf"))
        self.text = {p.name: p.read_text(encoding="utf-8") for p in self.files}
        self.resources: dict[str, dict[str, dict[str, Any]]] = {}
        self.data: dict[str, dict[str, dict[str, Any]]] = {}
        self.locals: dict[str, Any] = {}
        self.variables: dict[str, dict[str, Any]] = {}
        self.outputs: dict[str, dict[str, Any]] = {}
        self.terraform: list[dict[str, Any]] = []
        for path in self.files:
            parsed = _load(path)
            for block in parsed.get("resource", []):
                for rtype, named in block.items():
                    self.resources.setdefault(rtype, {}).update(named)
            for block in parsed.get("data", []):
                for dtype, named in block.items():
                    self.data.setdefault(dtype, {}).update(named)
            for block in parsed.get("locals", []):
                self.locals.update(block)
            for block in parsed.get("variable", []):
                self.variables.update(block)
            for block in parsed.get("output", []):
                self.outputs.update(block)
            self.terraform.extend(parsed.get("terraform", []))

    def resource(self, rtype: str, name: str) -> dict[str, Any]:
        assert rtype in self.resources and name in self.resources[rtype], f"missing {rtype}.{name}"
        return self.resources[rtype][name]

    def default(self, variable: str) -> Any:
        assert variable in self.variables, f"variable {variable} is not declared"
        return self.variables[variable].get("default")

    def code(self) -> str:
        """All Terraform text without comments (for reference checks)."""
        return "\n".join(_without_comments(t) for t in self.text.values())


def _without_comments(text: str) -> str:
    out = []
    for line in text.splitlines():
        stripped = line.lstrip()
        if stripped.startswith(("#", "//")):
            continue
        out.append(re.sub(r"\s+#\s.*$", "", line))
    return "\n".join(out)


@functools.cache
def config() -> Config:
    return Config(TF_DIR)


def _block(body: dict[str, Any], name: str) -> dict[str, Any]:
    """The single nested block ``name`` (python-hcl2 renders blocks as one-element lists)."""
    value = body.get(name)
    assert value, f"block {name} missing"
    return value[0] if isinstance(value, list) else value


def _ref(value: Any) -> str:
    """``${google_x.y.id}`` -> ``google_x.y.id``."""
    text = str(value)
    return text[2:-1] if text.startswith("${") and text.endswith("}") else text


def _var(value: Any) -> str:
    match = re.fullmatch(r"\$\{var\.([A-Za-z0-9_]+)\}", str(value))
    assert match, f"{value!r} is not a plain variable reference"
    return match[1]


def _grants(map_name: str) -> Iterator[tuple[str, str, str, str]]:
    for principal, grants in config().locals[map_name].items():
        for grant in grants:
            yield principal, grant["role"], grant["scope"], grant["reason"]


# ---------------------------------------------------------------------------------------------
# files, versions, references
# ---------------------------------------------------------------------------------------------


def test_terraform_fmt_is_clean() -> None:
    terraform = shutil.which("terraform")
    if terraform is None:
        pytest.skip(
            "terraform is not on PATH: `terraform fmt -check -recursive deploy/terraform` skipped "
            "(install Terraform >= 1.5 to run it; the HCL checks below still ran)"
        )
    result = subprocess.run(
        [terraform, "fmt", "-check", "-recursive", "-diff", str(TF_DIR)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"terraform fmt would change:\n{result.stdout}"


def _checkov() -> str | None:
    """$CHECKOV, the separate venv `make test` installs it into, or PATH (never the dev venv)."""
    candidates = [os.environ.get("CHECKOV"), str(ROOT / ".venv" / "checkov" / "bin" / "checkov")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("checkov")


def test_checkov_finds_nothing_unjustified() -> None:
    checkov = _checkov()
    if checkov is None:
        pytest.skip(
            "checkov not found: `make test` installs it in its own venv (.venv/checkov); "
            "or set CHECKOV=/path/to/checkov"
        )
    result = subprocess.run(
        [
            checkov,
            "--directory",
            str(TF_DIR),
            "--framework",
            "terraform",
            "--skip-download",
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    report = json.loads(result.stdout)
    reports = report if isinstance(report, list) else [report]
    for entry in reports:
        summary = entry["summary"]
        failed = [f"{c['check_id']} {c['resource']}" for c in entry["results"]["failed_checks"]]
        assert summary["failed"] == 0 and summary["parsing_errors"] == 0, failed
        for skipped in entry["results"]["skipped_checks"]:
            reason = skipped.get("check_result", {}).get("suppress_comment", "")
            assert len(reason.strip()) > 20, (
                f"{skipped['check_id']} on {skipped['resource']} is skipped without a reason"
            )


def test_module_is_split_by_concern() -> None:
    assert {p.name for p in config().files} == CONCERN_FILES


def test_terraform_and_providers_are_pinned() -> None:
    blocks = config().terraform
    assert any(b.get("required_version") == ">= 1.5" for b in blocks)
    providers: dict[str, Any] = {}
    for block in blocks:
        for required in block.get("required_providers", []):
            providers.update(required)
    for name in ("google", "google-beta"):
        assert providers[name]["source"] == f"hashicorp/{name}"
        assert re.fullmatch(r"~> 6\.\d+", providers[name]["version"]), providers[name]


def test_every_reference_is_declared() -> None:
    """A cheap stand-in for ``terraform validate``: no typo in var., local. or resource names."""
    cfg = config()
    code = cfg.code()
    for name in set(re.findall(r"\bvar\.([A-Za-z0-9_]+)", code)):
        assert name in cfg.variables, f"var.{name} is used but not declared"
    for name in set(re.findall(r"\blocal\.([A-Za-z0-9_]+)", code)):
        assert name in cfg.locals, f"local.{name} is used but not declared"
    for rtype, name in set(re.findall(r"(?<![.\w])(google(?:_[a-z0-9]+)+)\.([a-z0-9_]+)\b", code)):
        assert name in cfg.resources.get(rtype, {}), f"{rtype}.{name} is referenced but not defined"
    for dtype, name in set(re.findall(r"\bdata\.(google_[a-z0-9_]+)\.([a-z0-9_]+)\b", code)):
        assert name in cfg.data.get(dtype, {}), f"data.{dtype}.{name} is referenced but not defined"


def test_variables_have_descriptions_and_types() -> None:
    for name, body in config().variables.items():
        assert body.get("description"), f"variable {name} has no description"
        assert body.get("type"), f"variable {name} has no type"


def test_outputs() -> None:
    outputs = config().outputs
    for name in ("topics", "function_urls", "job_names", "service_account_emails", "commands_topic"):
        assert name in outputs, f"output {name} missing"


def test_example_tfvars_sets_every_required_variable() -> None:
    values = _load(EXAMPLE_TFVARS)
    required = {name for name, body in config().variables.items() if "default" not in body}
    assert required <= set(values), f"examples/gatehouse.tfvars misses {required - set(values)}"
    assert set(values) <= set(config().variables), "examples/gatehouse.tfvars sets unknown variables"
    assert not str(values["image"]).endswith(":latest")


# ---------------------------------------------------------------------------------------------
# Pub/Sub
# ---------------------------------------------------------------------------------------------


def _subscriptions() -> dict[str, dict[str, Any]]:
    return config().resources["google_pubsub_subscription"]


def _subscription_key(resource_name: str) -> str:
    """local.subscription_ids key of a subscription resource (what scopes in iam.tf name)."""
    for key, ref in config().locals["subscription_ids"].items():
        if _ref(ref) == f"google_pubsub_subscription.{resource_name}.id":
            return str(key)
    pytest.fail(f"google_pubsub_subscription.{resource_name} is not in local.subscription_ids")


def _consumed_subscriptions() -> set[str]:
    """Subscriptions a function (push) or a job (pull, by reference or by IAM grant) reads."""
    cfg = config()
    consumed = {name for name, body in _subscriptions().items() if body.get("push_config")}
    jobs_text = str(cfg.locals["jobs"])
    consumed |= set(re.findall(r"google_pubsub_subscription\.([a-z0-9_]+)", jobs_text))
    granted = {
        scope.split(":", 1)[1]
        for _, role, scope, _ in _grants("service_account_roles")
        if role == "roles/pubsub.subscriber" and scope.startswith("subscription:")
    }
    consumed |= {name for name in _subscriptions() if _subscription_key(name) in granted}
    return consumed


def test_every_consumed_subscription_has_a_dead_letter_policy_and_backoff() -> None:
    consumed = _consumed_subscriptions()
    assert {"run_events", "commands", "alerts_tickets"} <= consumed
    for name in consumed:
        body = _subscriptions()[name]
        dead_letter = _block(body, "dead_letter_policy")
        assert _ref(dead_letter["dead_letter_topic"]) == "google_pubsub_topic.dead_letters.id", name
        attempts = dead_letter["max_delivery_attempts"]
        if isinstance(attempts, str):
            attempts = config().default(_var(attempts))
        assert 5 <= int(attempts) <= 100, name
        retry = _block(body, "retry_policy")
        assert retry.get("minimum_backoff") and retry.get("maximum_backoff"), name
        assert _ref(body["topic"]) != "google_pubsub_topic.dead_letters.id", name


def test_the_commands_subscription_keeps_secret_manager_test_messages_off() -> None:
    """Secret Manager's data-less TOPIC_CONFIGURED (and its other events) never reach on_command;
    commands (no attributes) and SECRET_ROTATE do. The local stack uses the same filter."""
    from gatehouse.local.stack import COMMANDS_FILTER

    assert _subscriptions()["commands"].get("filter") == COMMANDS_FILTER
    assert "SECRET_ROTATE" in COMMANDS_FILTER and "NOT attributes:eventType" in COMMANDS_FILTER
    assert len(COMMANDS_FILTER.encode()) <= 256  # Pub/Sub's limit
    for name, body in _subscriptions().items():
        if name != "commands":
            assert not body.get("filter"), name


def test_pubsub_agent_can_dead_letter() -> None:
    agent = {(role, scope) for who, role, scope, _ in _grants("service_agent_roles") if who == "pubsub"}
    assert ("roles/pubsub.publisher", "topic:dead-letters") in agent
    for name, body in _subscriptions().items():
        if body.get("dead_letter_policy"):
            assert ("roles/pubsub.subscriber", f"subscription:{_subscription_key(name)}") in agent, name


def test_push_subscriptions_authenticate_with_oidc_as_the_push_invoker() -> None:
    pushed = {name: body for name, body in _subscriptions().items() if body.get("push_config")}
    assert set(pushed) == {"run_events", "commands"}
    function_of = {"run_events": "on-run-event", "commands": "on-command"}
    for name, body in pushed.items():
        push = _block(body, "push_config")
        oidc = _block(push, "oidc_token")
        assert 'google_service_account.this["push-invoker"].email' in str(oidc["service_account_email"])
        function = function_of[name]
        assert f'google_cloud_run_v2_service.function["{function}"].uri' in str(oidc["audience"])
        assert str(push["push_endpoint"]).startswith(
            f'${{google_cloud_run_v2_service.function["{function}"].uri}}'
        )
    invoker = {
        (role, scope) for who, role, scope, _ in _grants("service_account_roles") if who == "push-invoker"
    }
    assert invoker == {
        ("roles/run.invoker", "service:on-run-event"),
        ("roles/run.invoker", "service:on-command"),
    }


# ---------------------------------------------------------------------------------------------
# the audit-log sink
# ---------------------------------------------------------------------------------------------


def test_sink_filter_names_all_six_method_names() -> None:
    sink_filter = str(config().locals["sink_filter"])
    for method in SINK_METHODS:
        assert f'protoPayload.methodName=\\"{method}\\"' in sink_filter or (
            f'protoPayload.methodName="{method}"' in sink_filter
        ), method
    assert "run.googleapis.com" in sink_filter
    assert "cloudaudit.googleapis.com%2Factivity" in sink_filter
    assert "SetIamPolicy" not in sink_filter  # gatehouse's own grants would echo back as events


def test_exactly_one_sink_per_scope_and_its_writer_may_publish() -> None:
    cfg = config()
    scopes = {}
    for rtype in SINK_TYPES:
        body = cfg.resource(rtype, "run_events")
        assert _ref(body["filter"]) == "local.sink_filter", rtype
        assert "google_pubsub_topic.run_events.id" in str(cfg.locals["sink_destination"])
        match = re.fullmatch(r'\$\{var\.sink_scope == "(\w+)" \? 1 : 0\}', str(body["count"]))
        assert match, f"{rtype} count must be chosen by sink_scope"
        scopes[match[1]] = body
    assert set(scopes) == {"project", "folder", "organization"}
    assert scopes["folder"]["include_children"] is True
    assert scopes["organization"]["include_children"] is True
    assert scopes["project"]["unique_writer_identity"] is True
    sink_grants = {(r, s) for who, r, s, _ in _grants("service_agent_roles") if who == "log-sink-writer"}
    assert sink_grants == {("roles/pubsub.publisher", "topic:run-events")}
    assert "writer_identity" in str(cfg.locals["sink_writer_identity"])


# ---------------------------------------------------------------------------------------------
# functions, jobs, schedules
# ---------------------------------------------------------------------------------------------


def test_functions_run_the_image_as_cloudevent_functions_with_their_own_identity() -> None:
    cfg = config()
    service = cfg.resource("google_cloud_run_v2_service", "function")
    template = _block(service, "template")
    container = _block(template, "containers")
    assert _ref(container["image"]) == "var.image"
    assert service["ingress"] == "INGRESS_TRAFFIC_INTERNAL_ONLY"
    functions = cfg.locals["functions"]
    assert {f["target"] for f in functions.values()} == {"on_run_event", "on_command"}
    main = importlib.import_module("functions.main")  # the script functions-framework loads
    for name, spec in functions.items():
        assert callable(getattr(main, spec["target"]))
        assert spec["service_account"] == name
    env = str(container["dynamic"])  # dynamic "env": common settings + the function's own
    assert "local.common_env" in env and "FUNCTION_TARGET = each.value.target" in env
    assert (
        'FUNCTION_SIGNATURE_TYPE = \\"cloudevent\\"' in env or 'FUNCTION_SIGNATURE_TYPE = "cloudevent"' in env
    )


def test_function_scaling_fits_the_apigee_management_quota() -> None:
    cfg = config()
    calls = cfg.default("apigee_calls_per_minute")
    worst = (
        cfg.default("on_run_event_max_instances") * calls["on-run-event"]
        + cfg.default("on_command_max_instances") * calls["on-command"]
        + calls["reconcile"]
    )
    assert worst <= cfg.default("apigee_quota_per_minute") == 6000
    # the arithmetic is written down next to the settings
    assert "6,000" in cfg.text["functions.tf"] and "5,400" in cfg.text["functions.tf"]
    service = cfg.resource("google_cloud_run_v2_service", "function")
    template = _block(service, "template")
    assert _var(template["max_instance_request_concurrency"]) == "function_concurrency"
    assert _ref(_block(template, "scaling")["max_instance_count"]) == "each.value.max_instances"
    assert "lifecycle" in service  # the precondition that refuses a plan above the quota


def test_jobs_run_their_modules_with_their_own_identity() -> None:
    cfg = config()
    jobs = cfg.locals["jobs"]
    assert {j["module"] for j in jobs.values()} == {
        "jobs.reconcile",
        "jobs.rotate_credentials",
        "jobs.latency_tickets",
    }
    assert {j["service_account"] for j in jobs.values()} == {"reconcile", "rotate", "tickets"}
    job = cfg.resource("google_cloud_run_v2_job", "job")
    container = _block(_block(_block(job, "template"), "template"), "containers")
    assert _ref(container["image"]) == "var.image"
    assert container["command"] == ["python", "-m", "${each.value.module}"]
    for module in {j["module"] for j in jobs.values()}:
        assert (ROOT / module.replace(".", "/") / "__main__.py").exists()
        assert callable(importlib.import_module(f"{module}.main").main)


_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_WEEKDAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
# (lowest, highest, names) for minute, hour, day of month, month, day of week (0 and 7 are Sunday)
_CRON_FIELDS = (
    (0, 59, {}),
    (0, 23, {}),
    (1, 31, {}),
    (1, 12, {m: i + 1 for i, m in enumerate(_MONTHS)}),
    (0, 7, {d: i for i, d in enumerate(_WEEKDAYS)}),
)


def _cron_value(token: str, low: int, high: int, names: dict[str, int]) -> int:
    value = names[token.upper()] if token.upper() in names else int(token) if token.isdigit() else None
    if value is None or not low <= value <= high:
        raise ValueError(f"{token!r} is outside {low}-{high}")
    return value


def validate_cron(expression: str) -> None:
    """Raise ValueError unless ``expression`` is a standard 5-field (unix) cron expression."""
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(f"{expression!r} has {len(fields)} fields, not 5")
    for field, (low, high, names) in zip(fields, _CRON_FIELDS, strict=True):
        for item in field.split(","):
            match = re.fullmatch(r"(\*|[A-Za-z0-9]+(?:-[A-Za-z0-9]+)?)(?:/(\d+))?", item)
            if not match:
                raise ValueError(f"{item!r} in {expression!r} is not a cron item")
            span, step = match[1], match[2]
            if step is not None and int(step) < 1:
                raise ValueError(f"step {step} in {expression!r} must be at least 1")
            if span != "*":
                bounds = [_cron_value(t, low, high, names) for t in span.split("-")]
                if len(bounds) == 2 and bounds[0] > bounds[1]:
                    raise ValueError(f"range {span!r} in {expression!r} is reversed")


@pytest.mark.parametrize("good", ["*/5 * * * *", "30 2 * * *", "0 9 1 1,4,7,10 *", "0 9 1 */3 MON-FRI"])
def test_cron_validator_accepts(good: str) -> None:
    validate_cron(good)


@pytest.mark.parametrize(
    "bad",
    [
        "*/5 * * *",
        "60 * * * *",
        "0 24 * * *",
        "0 0 0 * *",
        "* * * 13 *",
        "*/0 * * * *",
        "5-1 * * * *",
        "@daily",
    ],
)
def test_cron_validator_rejects(bad: str) -> None:
    with pytest.raises(ValueError, match=r"."):
        validate_cron(bad)


def test_every_schedule_is_valid_cron_with_an_explicit_time_zone() -> None:
    cfg = config()
    schedules = cfg.locals["schedules"]
    assert set(schedules) == set(cfg.locals["jobs"]), "one Scheduler job per Cloud Run job"
    example = _load(EXAMPLE_TFVARS)
    for spec in schedules.values():
        variable = _var(spec["schedule"])
        validate_cron(cfg.default(variable))
        if variable in example:
            validate_cron(example[variable])
    assert cfg.default("tickets_schedule") == "*/5 * * * *"
    assert cfg.default("reconcile_schedule").split()[2:] == ["*", "*", "*"]  # nightly
    assert cfg.default("rotation_schedule").split()[2:] == ["*", "*", "*"]  # daily, age-gated
    assert cfg.default("rotation_period") == "90d"  # quarterly policy
    scheduler = cfg.resource("google_cloud_scheduler_job", "job")
    assert _var(scheduler["time_zone"]) == "time_zone" and cfg.default("time_zone")


def test_scheduler_calls_the_v2_jobs_run_uri_with_an_oauth_token() -> None:
    scheduler = config().resource("google_cloud_scheduler_job", "job")
    target = _block(scheduler, "http_target")
    assert target["http_method"] == "POST"
    assert re.fullmatch(
        r"https://run\.googleapis\.com/v2/\$\{google_cloud_run_v2_job\.job\[each\.key\]\.id\}:run",
        str(target["uri"]),
    )
    token = _block(target, "oauth_token")
    assert 'google_service_account.this["scheduler"].email' in str(token["service_account_email"])
    assert "oidc_token" not in target
    scheduler_scopes = {scope for who, _, scope, _ in _grants("service_account_roles") if who == "scheduler"}
    assert scheduler_scopes == {f"job:{name}" for name in config().locals["jobs"]}


# ---------------------------------------------------------------------------------------------
# IAM
# ---------------------------------------------------------------------------------------------


def test_one_service_account_per_function_and_job() -> None:
    cfg = config()
    assert set(cfg.locals["service_accounts"]) == SERVICE_ACCOUNTS
    assert set(cfg.locals["service_account_roles"]) == SERVICE_ACCOUNTS
    identities = [f["service_account"] for f in cfg.locals["functions"].values()]
    identities += [j["service_account"] for j in cfg.locals["jobs"].values()]
    assert len(identities) == len(set(identities)) == 5


def test_no_basic_roles_anywhere() -> None:
    roles = {role for _, role, _, _ in _grants("service_account_roles")}
    roles |= {role for _, role, _, _ in _grants("service_agent_roles")}
    for rtype, named in config().resources.items():
        if rtype.endswith(("_iam_member", "_iam_binding", "_iam_policy")):
            for body in named.values():
                roles.add(str(body.get("role", "")))
    assert not roles & BASIC_ROLES
    assert not any(rtype.endswith(("_iam_binding", "_iam_policy")) for rtype in config().resources), (
        "authoritative IAM resources would remove other people's grants; use *_iam_member"
    )


def test_key_admin_only_on_the_rotated_service_accounts() -> None:
    key_admin = [
        (who, scope)
        for who, role, scope, _ in _grants("service_account_roles")
        if role == "roles/iam.serviceAccountKeyAdmin"
    ]
    # the rotation job, and on_command for the one-secret inline rotation; never project-wide
    assert sorted(key_admin) == [
        ("on-command", "rotated-service-accounts"),
        ("rotate", "rotated-service-accounts"),
    ]
    rotated = config().resource("google_service_account_iam_member", "rotated_keys")
    assert "rotated_service_accounts" in config().text["iam.tf"]
    assert "each.value.email" in str(rotated["service_account_id"])


def test_grants_are_resource_level_where_possible() -> None:
    project_wide = {
        (who, role)
        for who, role, scope, _ in _grants("service_account_roles")
        if scope in {"project", "fleet-projects", "apigee-project", "rotation-projects"}
    }
    # Only roles that have no narrower resource to live on are granted on projects.
    allowed = {
        "custom:runRegistrar",
        "custom:apigeeRegistrar",
        "custom:apigeeProxyReader",
        "custom:secretRotator",
        "custom:consumerReader",
        "roles/datastore.user",
        "roles/apigee.analyticsViewer",
        "roles/orgpolicy.policyViewer",
    }
    assert {role for _, role in project_wide} <= allowed
    for who, role, scope, _ in _grants("service_account_roles"):
        if role in {
            "roles/iam.serviceAccountUser",
            "roles/iam.serviceAccountTokenCreator",
            "roles/iam.serviceAccountOpenIdTokenCreator",
        }:
            assert scope.startswith("service-account:"), (who, role, scope)
        if role.startswith("roles/run.invoker") or role.startswith("roles/run.jobs"):
            assert scope.split(":")[0] in {"service", "job", "registered-services"}, (who, role, scope)


def test_custom_roles_are_granted_only_in_their_scope() -> None:
    custom = config().locals["custom_roles"]
    for who, role, scope, _ in _grants("service_account_roles"):
        if role.startswith("custom:"):
            name = role.removeprefix("custom:")
            assert name in custom, f"{who}: unknown custom role {name}"
            assert custom[name]["scope"] == scope, (who, role, scope)
    for name, spec in custom.items():
        for permission in spec["permissions"]:
            assert re.fullmatch(r"[a-z]+\.[A-Za-z]+\.[A-Za-z]+", permission), (name, permission)
        assert len(spec["permissions"]) == len(set(spec["permissions"])), name


def test_apigee_proxy_identity_is_wired_for_registration() -> None:
    agent = {(who, role, scope) for who, role, scope, _ in _grants("service_agent_roles")}
    assert ("apigee", "roles/iam.serviceAccountTokenCreator", "service-account:apigee-proxy") in agent
    sa = {(who, role, scope) for who, role, scope, _ in _grants("service_account_roles")}
    assert ("on-run-event", "roles/iam.serviceAccountUser", "service-account:apigee-proxy") in sa
    assert ("on-command", "roles/run.jobsExecutorWithOverrides", "job:reconcile") in sa
    common_env = config().locals["common_env"]
    assert 'google_service_account.this["apigee-proxy"].email' in str(
        common_env["GATEHOUSE_PROXY_SERVICE_ACCOUNT"]
    )


# -- the README tables ------------------------------------------------------------------------


def _readme_with_tables() -> Path:
    return README


def _table(marker: str) -> list[list[str]]:
    text = _readme_with_tables().read_text(encoding="utf-8")
    match = re.search(
        rf"<!-- gatehouse:{marker}:begin -->\n(.*?)<!-- gatehouse:{marker}:end -->", text, flags=re.DOTALL
    )
    assert match, f"table {marker} not found in {_readme_with_tables().name}"
    rows = []
    for line in match[1].strip().splitlines()[2:]:  # skip the header and the --- line
        cells = [c.strip().strip("`").strip() for c in line.strip().strip("|").split("|")]
        rows.append(cells)
    return rows


@pytest.mark.parametrize(
    ("marker", "map_name"),
    [("service-account-table", "service_account_roles"), ("service-agent-table", "service_agent_roles")],
)
def test_readme_table_matches_the_iam_map(marker: str, map_name: str) -> None:
    rows = _table(marker)
    assert all(len(r) == 4 and all(r) for r in rows), "each row: account | role | scope | reason"
    table = [(r[0], r[1], r[2]) for r in rows]
    in_map = [(who, role, scope) for who, role, scope, _ in _grants(map_name)]
    assert len(table) == len(set(table)), "duplicate rows in the README table"
    assert set(table) == set(in_map), (
        f"README only: {sorted(set(table) - set(in_map))}; iam.tf only: {sorted(set(in_map) - set(table))}"
    )
    assert all(reason for *_, reason in _grants(map_name))


def test_readme_operator_table_matches_the_operator_roles() -> None:
    rows = _table("operator-table")
    assert all(len(r) == 4 and all(r) for r in rows), "each row: who | role | scope | reason"
    in_map = {(g["role"], g["scope"]) for g in config().locals["operator_roles"]}
    assert {(r[1], r[2]) for r in rows} == in_map and len(rows) == len(in_map)
    assert {r[0] for r in rows} == {"freeze_operators"}
    custom = config().locals["custom_roles"]
    for role, scope in in_map:
        if role.startswith("custom:"):
            assert custom[role.removeprefix("custom:")]["scope"] == scope
    assert "var.freeze_operators" in config().code()


def test_freeze_pauses_the_jobs_terraform_schedules() -> None:
    cfg = config()
    jobs = [str(j) for j in cfg.locals["freeze_scheduler_jobs"]]
    assert jobs == ["${var.name_prefix}-rotate-credentials", "${var.name_prefix}-rollout-tick"]
    assert "rotate-credentials" in cfg.locals["schedules"]
    assert str(cfg.resource("google_cloud_scheduler_job", "rollout_tick")["name"]).endswith("-rollout-tick")
    env = cfg.locals["common_env"]
    assert "local.freeze_scheduler_jobs" in str(env["GATEHOUSE_SCHEDULER_FREEZE_JOBS"])
    assert _var(env["GATEHOUSE_SCHEDULER_LOCATION"]) == "region"
    # the settings' defaults are Terraform's names with the default prefix
    from gatehouse.config import Settings

    assert cfg.default("name_prefix") == "gatehouse"
    assert Settings().scheduler_freeze_jobs == [j.replace("${var.name_prefix}", "gatehouse") for j in jobs]


def test_readme_custom_role_table_matches_the_custom_roles() -> None:
    custom = config().locals["custom_roles"]
    rows = {r[0]: r for r in _table("custom-role-table")}
    assert set(rows) == set(custom)
    for name, spec in custom.items():
        assert rows[name][1] == spec["scope"], name
        assert [p.strip() for p in rows[name][2].split(",")] == spec["permissions"], name


# ---------------------------------------------------------------------------------------------
# secrets, Firestore, monitoring
# ---------------------------------------------------------------------------------------------


def test_no_secret_value_in_terraform() -> None:
    cfg = config()
    assert "google_secret_manager_secret_version" not in cfg.resources
    assert "secret_data" not in cfg.code()
    assert "sensitive_labels" not in cfg.code()
    secret = cfg.resource("google_secret_manager_secret", "tracker_token")
    assert _var(secret["secret_id"]) == "ticket_tracker_token_secret_id"
    # the job receives the secret's name, never its value
    env = cfg.locals["jobs"]["latency-tickets"]["env"]
    assert str(env["GATEHOUSE_TICKETS_TOKEN_SECRET"]).endswith("/versions/latest")
    for path in TF_DIR.rglob("*.tfvars"):
        assert not re.search(
            r"(?i)(token|password|secret)\s*=\s*\"[^\"]{8,}", path.read_text(encoding="utf-8")
        ), path


def test_firestore_database_is_native_optional_and_outlives_destroy() -> None:
    cfg = config()
    db = cfg.resource("google_firestore_database", "gatehouse")
    assert db["type"] == "FIRESTORE_NATIVE"
    assert "var.create_firestore_database" in str(db["count"])
    assert db["deletion_policy"] == "ABANDON"
    assert db["delete_protection_state"] == "DELETE_PROTECTION_ENABLED"


def test_latency_alerts_feed_the_tickets_subscription() -> None:
    cfg = config()
    alerts = cfg.locals["latency_alerts"]
    proxy, target = str(alerts["proxy"]["filter"]), str(alerts["target"]["filter"])
    assert 'resource.type=\\"apigee.googleapis.com/Proxy\\"' in proxy or (
        'resource.type="apigee.googleapis.com/Proxy"' in proxy
    )
    assert "apigee.googleapis.com/proxy/latencies" in proxy
    assert "apigee.googleapis.com/target/latencies" in target
    policy = cfg.resource("google_monitoring_alert_policy", "apigee_latency")
    threshold = _block(_block(policy, "conditions"), "condition_threshold")
    assert threshold["duration"] == "300s"
    assert threshold["comparison"] == "COMPARISON_GT"
    assert "PERCENTILE_95" in str(threshold["aggregations"])
    assert "google_monitoring_notification_channel.alerts.id" in str(policy["notification_channels"])
    channel = cfg.resource("google_monitoring_notification_channel", "alerts")
    assert channel["type"] == "pubsub"
    assert _ref(channel["labels"]["topic"]) == "google_pubsub_topic.alerts.id"
    monitoring = {
        (r, s) for who, r, s, _ in _grants("service_agent_roles") if who == "monitoring-notification"
    }
    assert monitoring == {("roles/pubsub.publisher", "topic:alerts")}
    assert "gcp-sa-monitoring-notification" in str(cfg.locals["principals"])
    assert _ref(cfg.resource("google_pubsub_subscription", "alerts_tickets")["topic"]) == (
        "google_pubsub_topic.alerts.id"
    )


def test_spec_readers_mint_id_tokens_as_the_proxy_identity_only() -> None:
    """Reading a service-path OpenAPI spec needs an ID token minted as the proxy identity (which
    holds run.invoker): exactly the three identities that register, on that one account, and the
    OpenID token creator role only (no access tokens, no signing)."""
    sa = [(who, role, scope) for who, role, scope, _ in _grants("service_account_roles")]
    openid = [(who, scope) for who, role, scope in sa if role == "roles/iam.serviceAccountOpenIdTokenCreator"]
    assert sorted(openid) == [
        ("on-command", "service-account:apigee-proxy"),
        ("on-run-event", "service-account:apigee-proxy"),
        ("reconcile", "service-account:apigee-proxy"),
    ]
    registering = {"on-run-event", "on-command", "reconcile"}
    assert not [
        (who, role)
        for who, role, _ in sa
        if who in registering
        and (role == "roles/iam.serviceAccountTokenCreator" or role.startswith("roles/run.invoker"))
    ]
