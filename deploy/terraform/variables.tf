# ---------------------------------------------------------------------------------------------
# Where gatehouse runs
# ---------------------------------------------------------------------------------------------

variable "project_id" {
  description = "Project that hosts gatehouse: topics, functions, jobs, schedules, Firestore, the tracker secret."
  type        = string
}

variable "region" {
  description = "Region of the functions, jobs and Cloud Scheduler jobs (a Cloud Scheduler location)."
  type        = string
}

variable "name_prefix" {
  description = "Prefix of every resource name (service accounts, topics, services, jobs, custom roles)."
  type        = string
  default     = "gatehouse"

  validation {
    # service-account ids are 6-30 characters: prefix + "-" + the longest suffix (12) must fit
    condition     = can(regex("^[a-z][a-z0-9-]{0,11}[a-z0-9]$", var.name_prefix))
    error_message = "name_prefix: 2-13 characters of lowercase letters, digits and '-', starting with a letter."
  }
}

variable "labels" {
  description = "Extra labels for every resource that takes labels."
  type        = map(string)
  default     = {}
}

variable "enable_apis" {
  description = "Enable the Google APIs gatehouse needs in project_id (never disabled on destroy)."
  type        = bool
  default     = true
}

variable "image" {
  description = "The gatehouse image (deploy/Dockerfile), by immutable tag or digest: REGION-docker.pkg.dev/PROJECT/REPO/gatehouse:<commit sha> or ...@sha256:<digest>."
  type        = string

  validation {
    condition     = can(regex("(@sha256:[0-9a-f]{64}|:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})$", var.image)) && !endswith(var.image, ":latest")
    error_message = "image must carry an immutable tag (a commit SHA) or a digest, never only :latest: a rollback needs the previous tag."
  }
}

# ---------------------------------------------------------------------------------------------
# Apigee and the fleet
# ---------------------------------------------------------------------------------------------

variable "apigee_organization" {
  description = "Apigee organization name (for Apigee X, the id of the project that holds it)."
  type        = string
}

variable "apigee_project_id" {
  description = "Project of the Apigee organization (where the Apigee roles are granted and the Apigee service agent lives). Defaults to apigee_organization."
  type        = string
  default     = null
}

variable "apigee_environments" {
  description = "Environments a service is deployed to unless its annotation says otherwise (GATEHOUSE_APIGEE_ENVIRONMENTS)."
  type        = list(string)
  default     = ["test"]

  validation {
    condition     = length(var.apigee_environments) > 0 && alltrue([for e in var.apigee_environments : can(regex("^[a-z][a-z0-9-]{0,31}$", e))])
    error_message = "apigee_environments: 1 or more names matching ^[a-z][a-z0-9-]{0,31}$."
  }
}

variable "owner_id" {
  description = "This installation's owner label value (GATEHOUSE_OWNER_ID): gatehouse only ever changes proxies that carry it."
  type        = string
  default     = "gatehouse"

  validation {
    condition     = can(regex("^[a-z][a-z0-9_-]{0,39}$", var.owner_id))
    error_message = "owner_id: 1-40 characters of lowercase letters, digits, '-' or '_', starting with a letter."
  }
}

variable "policy" {
  description = "GATEHOUSE_POLICY: upsert-only (default), sync or create-only."
  type        = string
  default     = "upsert-only"

  validation {
    condition     = contains(["upsert-only", "sync", "create-only"], var.policy)
    error_message = "policy must be upsert-only, sync or create-only."
  }
}

variable "fleet_projects" {
  description = "Projects whose Cloud Run services gatehouse registers (GATEHOUSE_PROJECTS). The registration identities get their Cloud Run grants in each. Empty = [project_id]."
  type        = list(string)
  default     = []
}

variable "fleet_regions" {
  description = "Regions the nightly reconcile sweeps (GATEHOUSE_REGIONS). Empty = [region]."
  type        = list(string)
  default     = []
}

variable "sink_scope" {
  description = "Where the audit-log sink lives: project (one fleet project), folder or organization (aggregated sink with include_children, for fleets spread over many projects)."
  type        = string
  default     = "project"

  validation {
    condition     = contains(["project", "folder", "organization"], var.sink_scope)
    error_message = "sink_scope must be project, folder or organization."
  }
}

variable "sink_parent" {
  description = "Id of the sink's parent: a project id (sink_scope=project; default project_id), a folder id (123456789012) or an organization id."
  type        = string
  default     = null

  validation {
    condition     = var.sink_parent == null || can(regex("^([a-z][a-z0-9-]{4,28}[a-z0-9]|[0-9]{6,20})$", var.sink_parent))
    error_message = "sink_parent: a project id, or the numeric id of a folder or organization (without folders/ or organizations/)."
  }
}

# ---------------------------------------------------------------------------------------------
# Scaling: sized to Apigee's management quota (arithmetic in functions.tf)
# ---------------------------------------------------------------------------------------------

variable "apigee_quota_per_minute" {
  description = "Apigee management API calls allowed per minute per organization (6,000 by default)."
  type        = number
  default     = 6000
}

variable "apigee_calls_per_minute" {
  description = "GATEHOUSE_APIGEE_CALLS_PER_MINUTE per process of each component that calls the management API."
  type        = map(number)
  default = {
    "on-run-event" = 1200
    "on-command"   = 600
    "reconcile"    = 1200
  }

  validation {
    condition     = alltrue([for k in ["on-run-event", "on-command", "reconcile"] : contains(keys(var.apigee_calls_per_minute), k)])
    error_message = "apigee_calls_per_minute needs on-run-event, on-command and reconcile."
  }
}

variable "on_run_event_max_instances" {
  description = "Max instances of on-run-event (each one process with its own Apigee budget)."
  type        = number
  default     = 3
}

variable "on_command_max_instances" {
  description = "Max instances of on-command."
  type        = number
  default     = 1
}

variable "function_min_instances" {
  description = "Min instances of each function (0 = scale to zero; 1 removes cold starts for a fee)."
  type        = number
  default     = 0
}

variable "function_concurrency" {
  description = "Requests per function instance (also the functions-framework thread count)."
  type        = number
  default     = 20
}

variable "deletion_protection" {
  description = "Terraform deletion protection on the Cloud Run services and jobs (stateless; off so `terraform destroy` works)."
  type        = bool
  default     = false
}

# ---------------------------------------------------------------------------------------------
# Pub/Sub delivery
# ---------------------------------------------------------------------------------------------

variable "max_delivery_attempts" {
  description = "Deliveries before a message goes to the dead-letter topic (5-100). Generous because a burst answered with 429 by a saturated function also counts; the nightly reconcile catches whatever is dead-lettered."
  type        = number
  default     = 20

  validation {
    condition     = var.max_delivery_attempts >= 5 && var.max_delivery_attempts <= 100
    error_message = "max_delivery_attempts must be between 5 and 100."
  }
}

variable "pubsub_kms_key_name" {
  description = "Cloud KMS key (projects/P/locations/L/keyRings/R/cryptoKeys/K) for the topics; null = Google-managed encryption. The Pub/Sub service agent needs roles/cloudkms.cryptoKeyEncrypterDecrypter on it."
  type        = string
  default     = null
}

variable "retry_minimum_backoff" {
  description = "Pub/Sub retry_policy minimum_backoff."
  type        = string
  default     = "10s"
}

variable "retry_maximum_backoff" {
  description = "Pub/Sub retry_policy maximum_backoff (at most 600s)."
  type        = string
  default     = "600s"
}

# ---------------------------------------------------------------------------------------------
# Schedules (5-field cron, evaluated in time_zone)
# ---------------------------------------------------------------------------------------------

variable "time_zone" {
  description = "tz database name the schedules are evaluated in."
  type        = string
  default     = "Etc/UTC"
}

variable "reconcile_schedule" {
  description = "Nightly full reconcile."
  type        = string
  default     = "30 2 * * *"

  validation {
    condition     = length(split(" ", trimspace(var.reconcile_schedule))) == 5
    error_message = "reconcile_schedule must be a 5-field cron expression."
  }
}

variable "rotation_schedule" {
  description = "Daily rotation run; the job itself only rotates what is older than rotation_period (age gate)."
  type        = string
  default     = "0 6 * * *"

  validation {
    condition     = length(split(" ", trimspace(var.rotation_schedule))) == 5
    error_message = "rotation_schedule must be a 5-field cron expression."
  }
}

variable "tickets_schedule" {
  description = "How often the tickets job drains the alerts subscription."
  type        = string
  default     = "*/5 * * * *"

  validation {
    condition     = length(split(" ", trimspace(var.tickets_schedule))) == 5
    error_message = "tickets_schedule must be a 5-field cron expression."
  }
}

variable "rollout_tick_schedule" {
  description = "How often the rollout tick runs: it starts a rollout when the fleet configuration changed and moves a running one on (deploy a wave, judge it after its bake)."
  type        = string
  default     = "*/5 * * * *"

  validation {
    condition     = length(split(" ", trimspace(var.rollout_tick_schedule))) == 5
    error_message = "rollout_tick_schedule must be a 5-field cron expression."
  }
}

# ---------------------------------------------------------------------------------------------
# Rotation
# ---------------------------------------------------------------------------------------------

variable "rotation_period" {
  description = "GATEHOUSE_ROTATION_PERIOD: age at which a credential is rotated (quarterly = 90d)."
  type        = string
  default     = "90d"
}

variable "rotation_projects" {
  description = "Projects whose Secret Manager secrets carry rotation targets (GATEHOUSE_ROTATION_PROJECTS). Empty = [project_id]."
  type        = list(string)
  default     = []
}

variable "rotated_service_accounts" {
  description = "Emails of the service accounts whose keys the rotation job may create, disable and delete. Key admin is granted on each of these accounts only, never project-wide."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for e in var.rotated_service_accounts : can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]@[a-z][a-z0-9-]{4,28}[a-z0-9]\\.iam\\.gserviceaccount\\.com$", e))])
    error_message = "rotated_service_accounts: user-managed service-account emails (NAME@PROJECT.iam.gserviceaccount.com)."
  }
}

# ---------------------------------------------------------------------------------------------
# Tickets
# ---------------------------------------------------------------------------------------------

variable "ticket_tracker" {
  description = "Where tickets go: github or jira."
  type        = string
  default     = "github"

  validation {
    condition     = contains(["github", "jira"], var.ticket_tracker)
    error_message = "ticket_tracker must be github or jira."
  }
}

variable "ticket_tracker_target" {
  description = "GitHub repository (owner/name) or Jira project key."
  type        = string

  validation {
    condition     = can(regex("^([A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+|[A-Z][A-Z0-9_]{1,9})$", var.ticket_tracker_target))
    error_message = "ticket_tracker_target: owner/name for GitHub, or a Jira project key such as OPS."
  }
}

variable "ticket_tracker_url" {
  description = "Jira site (https://example.atlassian.net); ignored for GitHub (leave empty for github.com)."
  type        = string
  default     = ""
}

variable "ticket_tracker_token_secret_id" {
  description = "Secret Manager secret id for the tracker token. Terraform creates the secret, never a version: add one with gcloud (README)."
  type        = string
  default     = "gatehouse-tracker-token"
}

# ---------------------------------------------------------------------------------------------
# Firestore
# ---------------------------------------------------------------------------------------------

variable "create_firestore_database" {
  description = "Create the Firestore database (native mode). Set false when project_id already has it."
  type        = bool
  default     = true
}

variable "firestore_database" {
  description = "Firestore database id (GATEHOUSE_FIRESTORE_DATABASE)."
  type        = string
  default     = "(default)"
}

variable "firestore_location" {
  description = "Firestore location (a region or a multi-region such as eur3 / nam5). Default: region."
  type        = string
  default     = null
}

# ---------------------------------------------------------------------------------------------
# Monitoring
# ---------------------------------------------------------------------------------------------

variable "proxy_latency_threshold_ms" {
  description = "Alert when a proxy's p95 total latency (apigee.googleapis.com/proxy/latencies) stays above this for 5 minutes."
  type        = number
  default     = 2000
}

variable "target_latency_threshold_ms" {
  description = "Alert when a proxy's p95 target latency (apigee.googleapis.com/target/latencies) stays above this for 5 minutes."
  type        = number
  default     = 1500
}

variable "latency_alert_group_by" {
  description = "Labels one incident is kept per: the tickets job fingerprints (project, environment, proxy), so keep org/env/proxy."
  type        = list(string)
  default = [
    "resource.label.\"org\"",
    "resource.label.\"env\"",
    "resource.label.\"location\"",
    "metric.label.\"proxy_name\"",
  ]
}

variable "target_latency_resource_type" {
  description = "Monitored resource of apigee.googleapis.com/target/latencies (Apigee X reports it on apigee.googleapis.com/Proxy; hybrid documents apigee.googleapis.com/Target)."
  type        = string
  default     = "apigee.googleapis.com/Proxy"
}

variable "operator_notification_channels" {
  description = "Extra notification channel ids (email, chat) for the latency and dead-letter alerts."
  type        = list(string)
  default     = []
}

# -- inventory ------------------------------------------------------------------------------------

variable "inventory_bucket_name" {
  description = "Bucket for the nightly inventory.html/json (default: <project>-<prefix>-inventory)."
  type        = string
  default     = ""
}

variable "inventory_bucket_location" {
  description = "Location of the inventory bucket."
  type        = string
  default     = "EU"
}

variable "inventory_readers" {
  description = "Who may read the inventory page, e.g. [\"group:platform-team@example.com\"]."
  type        = list(string)
  default     = []
  validation {
    condition     = alltrue([for m in var.inventory_readers : can(regex("^(group|user|serviceAccount|domain):", m))]) && !contains(var.inventory_readers, "allUsers") && !contains(var.inventory_readers, "allAuthenticatedUsers")
    error_message = "inventory_readers are IAM members (group:, user:, serviceAccount:, domain:), never public."
  }
}

variable "inventory_history_days" {
  description = "Days an overwritten inventory page is kept (bucket versioning) before deletion."
  type        = number
  default     = 90
}

variable "inventory_access_log_bucket" {
  description = "Bucket that receives the inventory bucket's access logs (default: the bucket itself)."
  type        = string
  default     = ""
}

variable "freeze_operators" {
  description = "IAM members (user:, group:, serviceAccount:) who run `gatehouse freeze` and `gatehouse unfreeze`; each gets local.operator_roles in the gatehouse project (read, pause and resume the Scheduler jobs; write the freeze record)."
  type        = list(string)
  default     = []
}
