# Identities and what they may do.
#
# local.service_account_roles is THE list of grants: every IAM resource below is generated from it,
# the service-account table in the README is the same list in prose, and
# tests/test_deploy_terraform.py fails when the two differ. To change what gatehouse may do, edit
# the map and the table together.
#
# Rules the map follows (and tests/test_deploy_terraform.py checks):
#   - one service account per function and job, plus the scheduler, the push invoker and the
#     Apigee proxy identity;
#   - no basic roles (owner/editor/viewer), nothing project-wide that a resource-level grant can do;
#   - service-account key admin only on the accounts listed in var.rotated_service_accounts;
#   - custom roles where no predefined role is narrow enough (permissions listed in custom_roles).
#
# Scopes:
#   project                  the gatehouse project (var.project_id)
#   fleet-projects           each project in var.fleet_projects
#   apigee-project           the project of the Apigee organization
#   rotation-projects        each project in var.rotation_projects
#   topic:<t> subscription:<s> service:<function> job:<job> service-account:<sa> secret:<s>
#                            that one resource
#   rotated-service-accounts each account in var.rotated_service_accounts
#   registered-services      each Cloud Run service gatehouse registers; granted by gatehouse at
#                            registration time, never by Terraform (listed so the table is whole)

locals {
  service_accounts = {
    "on-run-event" = "gatehouse on_run_event: registers Cloud Run services with Apigee"
    "on-command"   = "gatehouse on_command: runs command messages"
    "reconcile"    = "gatehouse reconcile job: nightly full sweep"
    "rotate"       = "gatehouse rotate-credentials job"
    "tickets"      = "gatehouse latency-tickets job"
    "scheduler"    = "gatehouse Cloud Scheduler: starts the jobs"
    "push-invoker" = "gatehouse Pub/Sub push: invokes the functions"
    "apigee-proxy" = "gatehouse Apigee proxies: calls registered Cloud Run services"
  }

  service_account_roles = {
    "on-run-event" = [
      { role = "custom:runRegistrar", scope = "fleet-projects", reason = "read Cloud Run services and add/remove the proxy identity's run.invoker binding on each registered one" },
      { role = "custom:apigeeRegistrar", scope = "apigee-project", reason = "import, label, check, deploy, undeploy and prune the proxies gatehouse owns" },
      { role = "roles/iam.serviceAccountUser", scope = "service-account:apigee-proxy", reason = "deploy proxies that run as the proxy identity (iam.serviceAccounts.actAs)" },
      { role = "roles/iam.serviceAccountOpenIdTokenCreator", scope = "service-account:apigee-proxy", reason = "read services' OpenAPI specs (gatehouse.dev/openapi paths) with an ID token minted as the proxy identity, which already holds run.invoker: no invoker grant of gatehouse's own" },
      { role = "roles/datastore.user", scope = "project", reason = "per-proxy leases and per-service outcomes in Firestore" },
    ]
    "on-command" = [
      { role = "custom:runRegistrar", scope = "fleet-projects", reason = "reconcile one service inline: read it and manage the proxy identity's run.invoker binding" },
      { role = "custom:apigeeRegistrar", scope = "apigee-project", reason = "reconcile one service inline: plan or apply its proxy" },
      { role = "roles/iam.serviceAccountUser", scope = "service-account:apigee-proxy", reason = "deploy proxies that run as the proxy identity (iam.serviceAccounts.actAs)" },
      { role = "roles/iam.serviceAccountOpenIdTokenCreator", scope = "service-account:apigee-proxy", reason = "read services' OpenAPI specs (gatehouse.dev/openapi paths) with an ID token minted as the proxy identity, which already holds run.invoker: no invoker grant of gatehouse's own" },
      { role = "roles/datastore.user", scope = "project", reason = "leases and outcomes in Firestore" },
      { role = "roles/run.jobsExecutorWithOverrides", scope = "job:reconcile", reason = "start the reconcile job with GATEHOUSE_RECONCILE_MODE for reconcile all (run.jobs.runWithOverrides)" },
      { role = "roles/run.jobsExecutorWithOverrides", scope = "job:rotate-credentials", reason = "start the rotation job with GATEHOUSE_ROTATION_MODE for rotate all (run.jobs.runWithOverrides)" },
      { role = "roles/run.jobsExecutorWithOverrides", scope = "job:latency-tickets", reason = "start the tickets job with GATEHOUSE_TICKETS_MODE for the tickets command (run.jobs.runWithOverrides)" },
      { role = "custom:secretRotator", scope = "rotation-projects", reason = "rotate one secret inline: a rotate command or a SECRET_ROTATE notification" },
      { role = "roles/iam.serviceAccountKeyAdmin", scope = "rotated-service-accounts", reason = "rotate one service-account key inline, only on the accounts gatehouse rotates" },
      { role = "custom:consumerReader", scope = "fleet-projects", reason = "report the consumers of the secret it rotates inline" },
      { role = "roles/orgpolicy.policyViewer", scope = "rotation-projects", reason = "preflight of an inline rotation: key-creation and key-expiry policies" },
    ]
    "reconcile" = [
      { role = "custom:runRegistrar", scope = "fleet-projects", reason = "list every service per region and manage the proxy identity's run.invoker bindings" },
      { role = "custom:apigeeRegistrar", scope = "apigee-project", reason = "converge every proxy gatehouse owns (drift, orphans, lost events)" },
      { role = "roles/iam.serviceAccountUser", scope = "service-account:apigee-proxy", reason = "deploy proxies that run as the proxy identity (iam.serviceAccounts.actAs)" },
      { role = "roles/iam.serviceAccountOpenIdTokenCreator", scope = "service-account:apigee-proxy", reason = "read services' OpenAPI specs (gatehouse.dev/openapi paths) with an ID token minted as the proxy identity, which already holds run.invoker: no invoker grant of gatehouse's own" },
      { role = "roles/datastore.user", scope = "project", reason = "leases and outcomes in Firestore" },
      { role = "roles/iam.serviceAccountViewer", scope = "rotated-service-accounts", reason = "nightly inventory: key ages of the accounts gatehouse rotates" },
      { role = "roles/secretmanager.secretAccessor", scope = "secret:tracker-token", reason = "nightly inventory: the open tickets, from the tracker" },
    ]
    "rotate" = [
      { role = "custom:secretRotator", scope = "rotation-projects", reason = "find rotation targets, add/test/disable/destroy versions, move version aliases and annotations" },
      { role = "roles/iam.serviceAccountKeyAdmin", scope = "rotated-service-accounts", reason = "create, disable and delete keys of the accounts it rotates, and of no other" },
      { role = "custom:consumerReader", scope = "fleet-projects", reason = "report which Cloud Run services and jobs consume a rotated secret" },
      { role = "roles/orgpolicy.policyViewer", scope = "rotation-projects", reason = "preflight: read the effective key-creation and key-expiry organization policies" },
    ]
    "tickets" = [
      { role = "roles/pubsub.subscriber", scope = "subscription:alerts-tickets", reason = "pull and acknowledge Apigee latency incidents" },
      { role = "roles/datastore.user", scope = "project", reason = "the one-ticket-per-fingerprint ledger in Firestore" },
      { role = "roles/apigee.analyticsViewer", scope = "apigee-project", reason = "evidence from the Apigee stats API (latency, errors, traffic)" },
      { role = "custom:apigeeProxyReader", scope = "apigee-project", reason = "read the deployed proxy bundle to propose a concrete routing change" },
      { role = "roles/secretmanager.secretAccessor", scope = "secret:tracker-token", reason = "read the tracker token at run time" },
    ]
    "scheduler" = [
      { role = "roles/run.invoker", scope = "job:reconcile", reason = "start the nightly reconcile (run.jobs.run)" },
      { role = "roles/run.invoker", scope = "job:rotate-credentials", reason = "start the daily rotation run (run.jobs.run)" },
      { role = "roles/run.invoker", scope = "job:latency-tickets", reason = "start the tickets job every few minutes (run.jobs.run)" },
    ]
    "push-invoker" = [
      { role = "roles/run.invoker", scope = "service:on-run-event", reason = "deliver run-events messages to on_run_event" },
      { role = "roles/run.invoker", scope = "service:on-command", reason = "deliver command messages to on_command" },
    ]
    "apigee-proxy" = [
      { role = "roles/run.invoker", scope = "registered-services", reason = "Apigee calls each registered service with an ID token; gatehouse grants this per service at registration" },
    ]
  }

  # Google-managed service agents gatehouse's wiring depends on. Same shape, separate table in the
  # README: these identities belong to Google, not to gatehouse.
  service_agent_roles = {
    "pubsub" = [
      { role = "roles/pubsub.publisher", scope = "topic:dead-letters", reason = "forward messages that exhausted max_delivery_attempts" },
      { role = "roles/pubsub.subscriber", scope = "subscription:run-events", reason = "acknowledge the messages it dead-letters" },
      { role = "roles/pubsub.subscriber", scope = "subscription:commands", reason = "acknowledge the messages it dead-letters" },
      { role = "roles/pubsub.subscriber", scope = "subscription:alerts-tickets", reason = "acknowledge the messages it dead-letters" },
      { role = "roles/iam.serviceAccountTokenCreator", scope = "service-account:push-invoker", reason = "mint the OIDC tokens push deliveries carry (implicit only in projects created after 2021-04-08)" },
    ]
    "log-sink-writer" = [
      { role = "roles/pubsub.publisher", scope = "topic:run-events", reason = "the audit-log sink's writer identity publishes Cloud Run audit entries" },
    ]
    "monitoring-notification" = [
      { role = "roles/pubsub.publisher", scope = "topic:alerts", reason = "the Pub/Sub notification channel (in the Apigee project, where the metrics are) publishes incidents" },
    ]
    "apigee" = [
      { role = "roles/iam.serviceAccountTokenCreator", scope = "service-account:apigee-proxy", reason = "mint Google ID tokens as the proxy identity for GoogleIDToken targets" },
    ]
    "secretmanager" = [
      { role = "roles/pubsub.publisher", scope = "topic:commands", reason = "deliver SECRET_ROTATE notifications of secrets that list the commands topic to on_command" },
    ]
  }

  # People (or CI identities) who run `gatehouse freeze` / `unfreeze` (var.freeze_operators): the
  # CLI runs with their own credentials, not as a gatehouse service account. Same shape, its own
  # table in the README.
  operator_roles = [
    { role = "custom:schedulerFreezer", scope = "project", reason = "read, pause and resume the rotation and rollout-tick Scheduler jobs (cloudscheduler.jobs.enable is resume)" },
    { role = "roles/datastore.user", scope = "project", reason = "record the freeze, and the jobs it paused, in Firestore" },
  ]

  # Custom roles: the exact permissions, where every predefined role is wider.
  custom_roles = {
    # roles/run.admin would also let gatehouse deploy, change and delete services.
    runRegistrar = {
      scope       = "fleet-projects"
      title       = "gatehouse registrar (Cloud Run)"
      permissions = ["run.services.get", "run.services.list", "run.services.getIamPolicy", "run.services.setIamPolicy"]
    }
    # No predefined Apigee role both edits proxies and deploys them: apiAdminV2 cannot deploy and
    # environmentAdmin adds keystores, target servers, KVMs, flow hooks and shared flows.
    apigeeRegistrar = {
      scope = "apigee-project"
      title = "gatehouse registrar (Apigee)"
      permissions = [
        "apigee.proxies.create", "apigee.proxies.get", "apigee.proxies.list", "apigee.proxies.update",
        "apigee.proxyrevisions.get", "apigee.proxyrevisions.delete", "apigee.proxyrevisions.deploy", "apigee.proxyrevisions.undeploy",
        "apigee.deployments.create", "apigee.deployments.delete", "apigee.deployments.get", "apigee.deployments.list",
        "apigee.environments.get",
      ]
    }
    # roles/apigee.readOnlyAdmin would expose developers, apps and keys.
    apigeeProxyReader = {
      scope       = "apigee-project"
      title       = "gatehouse tickets (Apigee proxy bundles)"
      permissions = ["apigee.proxies.get", "apigee.proxyrevisions.get", "apigee.deployments.get", "apigee.deployments.list"]
    }
    # secretVersionManager cannot read payloads or move aliases; secretmanager.admin can delete secrets and change IAM.
    secretRotator = {
      scope = "rotation-projects"
      title = "gatehouse rotation (Secret Manager)"
      permissions = [
        "secretmanager.secrets.get", "secretmanager.secrets.list", "secretmanager.secrets.update",
        "secretmanager.versions.add", "secretmanager.versions.access", "secretmanager.versions.get", "secretmanager.versions.list",
        "secretmanager.versions.enable", "secretmanager.versions.disable", "secretmanager.versions.destroy",
      ]
    }
    # roles/cloudscheduler.admin would also create, change, delete and run jobs (and so publish to
    # any topic of the project); Cloud Scheduler grants only on projects, never on one job.
    schedulerFreezer = {
      scope       = "project"
      title       = "gatehouse freeze (Cloud Scheduler)"
      permissions = ["cloudscheduler.jobs.get", "cloudscheduler.jobs.pause", "cloudscheduler.jobs.enable"]
    }
    # roles/run.viewer would add IAM policies, revisions, executions and more.
    consumerReader = {
      scope       = "fleet-projects"
      title       = "gatehouse rotation (Cloud Run consumers)"
      permissions = ["run.services.get", "run.services.list", "run.jobs.get", "run.jobs.list"]
    }
  }

  # ---- everything below is derived from the three maps above ---------------------------------

  role_id_prefix = replace(var.name_prefix, "-", "_")

  scope_projects = {
    "project"           = [var.project_id]
    "fleet-projects"    = local.fleet_projects
    "apigee-project"    = [local.apigee_project_id]
    "rotation-projects" = local.rotation_projects
  }

  custom_role_instances = merge([
    for name, r in local.custom_roles : {
      for p in local.scope_projects[r.scope] : "${name}|${p}" => merge(r, { name = name, project = p })
    }
  ]...)

  principals = merge(
    { for sa, _ in local.service_accounts : "sa:${sa}" => "serviceAccount:${google_service_account.this[sa].email}" },
    {
      "agent:pubsub"                  = local.pubsub_agent
      "agent:log-sink-writer"         = local.sink_writer_identity
      "agent:monitoring-notification" = "serviceAccount:service-${data.google_project.apigee.number}@gcp-sa-monitoring-notification.iam.gserviceaccount.com"
      "agent:apigee"                  = "serviceAccount:service-${data.google_project.apigee.number}@gcp-sa-apigee.iam.gserviceaccount.com"
      "agent:secretmanager"           = "serviceAccount:service-${data.google_project.named[var.project_id].number}@gcp-sa-secretmanager.iam.gserviceaccount.com"
    },
  )

  grants = concat(
    flatten([for sa, list in local.service_account_roles : [for g in list : merge(g, { principal = "sa:${sa}" })]]),
    flatten([for agent, list in local.service_agent_roles : [for g in list : merge(g, { principal = "agent:${agent}" })]]),
  )

  grant_list = [
    for g in local.grants : {
      key       = "${g.principal}|${g.role}|${g.scope}"
      principal = g.principal
      role      = g.role
      kind      = split(":", g.scope)[0]
      target    = length(split(":", g.scope)) > 1 ? split(":", g.scope)[1] : ""
      custom    = startswith(g.role, "custom:") ? trimprefix(g.role, "custom:") : ""
    }
  ]

  project_grants = merge([
    for g in local.grant_list : {
      for p in lookup(local.scope_projects, g.kind, []) : "${g.key}|${p}" => merge(g, { project = p })
    }
  ]...)

  rotated_key_grants = merge([
    for g in local.grant_list : {
      for email in var.rotated_service_accounts : "${g.key}|${email}" => merge(g, { email = email })
    } if g.kind == "rotated-service-accounts"
  ]...)

  resource_kinds = ["topic", "subscription", "service", "job", "service-account", "secret"]
  known_kinds    = concat(keys(local.scope_projects), local.resource_kinds, ["rotated-service-accounts", "registered-services"])
}

resource "google_service_account" "this" {
  for_each = local.service_accounts

  project      = var.project_id
  account_id   = "${var.name_prefix}-${each.key}"
  display_name = "${var.name_prefix} ${each.key}"
  description  = each.value

  depends_on = [google_project_service.enabled]
}

resource "google_project_iam_custom_role" "this" {
  for_each = local.custom_role_instances

  project     = each.value.project
  role_id     = "${local.role_id_prefix}.${each.value.name}"
  title       = each.value.title
  description = "Managed by Terraform (gatehouse deploy/terraform/iam.tf)."
  permissions = each.value.permissions
}

# Guard rails on the map itself, evaluated at plan time.
resource "terraform_data" "iam_guard" {
  input = length(local.grant_list)

  lifecycle {
    precondition {
      condition     = alltrue([for g in local.grant_list : contains(local.known_kinds, g.kind)])
      error_message = "iam.tf: a grant uses an unknown scope kind (known: ${join(", ", local.known_kinds)})."
    }
    precondition {
      condition     = alltrue([for g in local.grant_list : !contains(["roles/owner", "roles/editor", "roles/viewer"], g.role)])
      error_message = "iam.tf: basic roles (owner/editor/viewer) are not allowed."
    }
    precondition {
      condition     = alltrue([for g in local.grant_list : g.role != "roles/iam.serviceAccountKeyAdmin" || g.kind == "rotated-service-accounts"])
      error_message = "iam.tf: roles/iam.serviceAccountKeyAdmin only on var.rotated_service_accounts, never project-wide."
    }
    precondition {
      condition     = alltrue([for g in local.grant_list : g.custom == "" || try(local.custom_roles[g.custom].scope == g.kind, false)])
      error_message = "iam.tf: a custom role is granted outside the scope it is defined in."
    }
    precondition {
      condition = !anytrue([for sa in ["rotate", "on-command"] :
      contains(var.rotated_service_accounts, "${var.name_prefix}-${sa}@${var.project_id}.iam.gserviceaccount.com")])
      error_message = "The identities that rotate (rotate, on-command) must not be in rotated_service_accounts."
    }
  }
}

# ---- one resource per kind of scope ---------------------------------------------------------

resource "google_project_iam_member" "grants" {
  for_each = local.project_grants

  project = each.value.project
  role    = each.value.custom != "" ? google_project_iam_custom_role.this["${each.value.custom}|${each.value.project}"].name : each.value.role
  member  = local.principals[each.value.principal]
}

# The freeze operators' grants: every role of local.operator_roles for every member.
resource "google_project_iam_member" "freeze_operators" {
  for_each = { for pair in setproduct(var.freeze_operators, local.operator_roles) : "${pair[0]}|${pair[1].role}" => pair }

  project = var.project_id
  role    = startswith(each.value[1].role, "custom:") ? google_project_iam_custom_role.this["${trimprefix(each.value[1].role, "custom:")}|${var.project_id}"].name : each.value[1].role
  member  = each.value[0]
}

resource "google_pubsub_topic_iam_member" "grants" {
  for_each = { for g in local.grant_list : g.key => g if g.kind == "topic" }

  project = var.project_id
  topic   = local.topic_ids[each.value.target]
  role    = each.value.role
  member  = local.principals[each.value.principal]

  # The monitoring notification agent exists only once the first Pub/Sub channel does.
  depends_on = [google_monitoring_notification_channel.alerts]
}

resource "google_pubsub_subscription_iam_member" "grants" {
  for_each = { for g in local.grant_list : g.key => g if g.kind == "subscription" }

  project      = var.project_id
  subscription = local.subscription_ids[each.value.target]
  role         = each.value.role
  member       = local.principals[each.value.principal]
}

resource "google_cloud_run_v2_service_iam_member" "grants" {
  for_each = { for g in local.grant_list : g.key => g if g.kind == "service" }

  project  = var.project_id
  location = var.region
  name     = google_cloud_run_v2_service.function[each.value.target].name
  role     = each.value.role
  member   = local.principals[each.value.principal]
}

resource "google_cloud_run_v2_job_iam_member" "grants" {
  for_each = { for g in local.grant_list : g.key => g if g.kind == "job" }

  project  = var.project_id
  location = var.region
  name     = google_cloud_run_v2_job.job[each.value.target].name
  role     = each.value.role
  member   = local.principals[each.value.principal]
}

resource "google_service_account_iam_member" "grants" {
  for_each = { for g in local.grant_list : g.key => g if g.kind == "service-account" }

  service_account_id = google_service_account.this[each.value.target].name
  role               = each.value.role
  member             = local.principals[each.value.principal]
}

# Key admin on each rotated account, nowhere else. The account's project is read from its email.
resource "google_service_account_iam_member" "rotated_keys" {
  for_each = local.rotated_key_grants

  service_account_id = "projects/${regex("@([^.]+)\\.", each.value.email)[0]}/serviceAccounts/${each.value.email}"
  role               = each.value.role
  member             = local.principals[each.value.principal]
}

resource "google_secret_manager_secret_iam_member" "grants" {
  for_each = { for g in local.grant_list : g.key => g if g.kind == "secret" }

  project   = var.project_id
  secret_id = local.secret_ids[each.value.target]
  role      = each.value.role
  member    = local.principals[each.value.principal]
}
