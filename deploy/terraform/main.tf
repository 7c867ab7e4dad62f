# gatehouse on Google Cloud. One file per concern:
#   pubsub.tf      topics, subscriptions (dead letters, retry backoff, OIDC push)
#   logging.tf     the audit-log sink (project, folder or organization) that feeds run-events
#   functions.tf   on_run_event and on_command as Cloud Run services (sized to Apigee's quota)
#   jobs.tf        reconcile, rotate-credentials, latency-tickets as Cloud Run jobs
#   scheduler.tf   Cloud Scheduler: nightly reconcile, daily rotation, tickets every 5 minutes
#   iam.tf         service accounts and THE map of what each one may do (README table = this map)
#   monitoring.tf  Apigee latency alerts -> Pub/Sub channel -> alerts topic; dead-letter alert
#   firestore.tf   leases, outcomes, the tickets ledger
#   secrets.tf     the tracker token secret (no value: a human adds it)

provider "google" {
  project = var.project_id
  region  = var.region
}

provider "google-beta" {
  project = var.project_id
  region  = var.region
}

data "google_project" "apigee" {
  project_id = local.apigee_project_id
}

# Secret Manager names secrets by project number, Cloud Run templates usually by id: the rotation
# consumer report needs both (GATEHOUSE_PROJECT_NUMBERS).
data "google_project" "named" {
  for_each   = toset(distinct(concat(local.fleet_projects, local.rotation_projects, [var.project_id])))
  project_id = each.key
}

locals {
  apigee_project_id = coalesce(var.apigee_project_id, var.apigee_organization)
  fleet_projects    = distinct(length(var.fleet_projects) > 0 ? var.fleet_projects : [var.project_id])
  fleet_regions     = distinct(length(var.fleet_regions) > 0 ? var.fleet_regions : [var.region])
  rotation_projects = distinct(length(var.rotation_projects) > 0 ? var.rotation_projects : [var.project_id])

  labels = merge(var.labels, {
    app               = "gatehouse"
    "gatehouse-owner" = var.owner_id
  })

  # Settings every process reads (shared/gatehouse/config.py); components add their own in functions.tf/jobs.tf.
  common_env = {
    GATEHOUSE_OWNER_ID              = var.owner_id
    GATEHOUSE_APIGEE_ORG            = var.apigee_organization
    GATEHOUSE_APIGEE_ENVIRONMENTS   = join(",", var.apigee_environments)
    GATEHOUSE_PROXY_SERVICE_ACCOUNT = google_service_account.this["apigee-proxy"].email
    GATEHOUSE_POLICY                = var.policy
    GATEHOUSE_PROJECTS              = join(",", local.fleet_projects)
    GATEHOUSE_REGIONS               = join(",", local.fleet_regions)
    GATEHOUSE_FIRESTORE_PROJECT     = var.project_id
    GATEHOUSE_FIRESTORE_DATABASE    = var.firestore_database
    GATEHOUSE_PROJECT_NUMBERS       = join(",", [for p, d in data.google_project.named : "${p}=${d.number}"])
    GATEHOUSE_ROTATION_PROJECTS     = join(",", local.rotation_projects)
    GATEHOUSE_ROTATION_PERIOD       = var.rotation_period
    # what `gatehouse freeze` pauses (scheduler.tf); the same values an operator's CLI needs
    GATEHOUSE_SCHEDULER_LOCATION    = var.region
    GATEHOUSE_SCHEDULER_FREEZE_JOBS = join(",", local.freeze_scheduler_jobs)
  }
}

# APIs of the gatehouse project. Never disabled on destroy: other workloads may use them.
# The Apigee project needs apigee.googleapis.com and iamcredentials.googleapis.com (GoogleIDToken
# targets); fleet projects need run.googleapis.com. Those belong to their owners (README).
resource "google_project_service" "enabled" {
  for_each = var.enable_apis ? toset([
    "artifactregistry.googleapis.com",
    "cloudresourcemanager.googleapis.com",
    "cloudscheduler.googleapis.com",
    "firestore.googleapis.com",
    "iam.googleapis.com",
    "iamcredentials.googleapis.com",
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "orgpolicy.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com",
    "secretmanager.googleapis.com",
    "storage.googleapis.com",
  ]) : toset([])

  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}
