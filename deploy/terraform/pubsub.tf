# Topics and subscriptions.
#
# Delivery: push subscriptions with an OIDC token, not Eventarc triggers. Both end in the same
# Pub/Sub push, but an Eventarc Pub/Sub trigger creates and owns its subscription, so its
# dead-letter policy, retry backoff and ack deadline would live outside Terraform (and drift), and
# Eventarc's direct audit-log triggers match one methodName each and cannot read a folder or
# organization sink. Owning the subscriptions keeps every delivery knob here, reviewed, and matches
# what the local stack runs (push + backoff + dead-letter topic; README "The local stack"). Cloud
# Run's own documentation now recommends this "direct Pub/Sub trigger" over Eventarc for Pub/Sub.
#
# Every subscription that a function or job reads has a dead-letter policy; the dead-letter topic
# has a plain subscription that nobody consumes automatically: messages wait there (7 days) for a
# human, and the nightly reconcile converges whatever they were about anyway.

locals {
  # Pub/Sub service agent: forwards dead letters and mints push OIDC tokens.
  pubsub_agent = "serviceAccount:${google_project_service_identity.pubsub.email}"

  topic_ids = {
    "run-events"   = google_pubsub_topic.run_events.id
    "commands"     = google_pubsub_topic.commands.id
    "alerts"       = google_pubsub_topic.alerts.id
    "dead-letters" = google_pubsub_topic.dead_letters.id
  }

  subscription_ids = {
    "run-events"     = google_pubsub_subscription.run_events.id
    "commands"       = google_pubsub_subscription.commands.id
    "alerts-tickets" = google_pubsub_subscription.alerts_tickets.id
    "dead-letters"   = google_pubsub_subscription.dead_letters.id
  }
}

resource "google_project_service_identity" "pubsub" {
  provider = google-beta
  project  = var.project_id
  service  = "pubsub.googleapis.com"

  depends_on = [google_project_service.enabled]
}

resource "google_pubsub_topic" "run_events" {
  # checkov:skip=CKV_GCP_83: CMEK is opt-in (var.pubsub_kms_key_name); by default Google-managed keys encrypt Cloud Run admin audit entries (service names, labels, annotations; no request payloads).
  name    = "${var.name_prefix}-run-events"
  project = var.project_id
  labels  = local.labels

  kms_key_name = var.pubsub_kms_key_name

  depends_on = [google_project_service.enabled]
}

resource "google_pubsub_topic" "commands" {
  # checkov:skip=CKV_GCP_83: CMEK is opt-in (var.pubsub_kms_key_name); by default Google-managed keys encrypt command messages (service names and modes, never credentials).
  name    = "${var.name_prefix}-commands"
  project = var.project_id
  labels  = local.labels

  kms_key_name = var.pubsub_kms_key_name

  depends_on = [google_project_service.enabled]
}

resource "google_pubsub_topic" "alerts" {
  # checkov:skip=CKV_GCP_83: CMEK is opt-in (var.pubsub_kms_key_name); by default Google-managed keys encrypt Cloud Monitoring incident summaries.
  name    = "${var.name_prefix}-alerts"
  project = var.project_id
  labels  = local.labels

  kms_key_name = var.pubsub_kms_key_name

  depends_on = [google_project_service.enabled]
}

resource "google_pubsub_topic" "dead_letters" {
  # checkov:skip=CKV_GCP_83: CMEK is opt-in (var.pubsub_kms_key_name); by default Google-managed keys encrypt copies of the three topics above.
  name    = "${var.name_prefix}-dead-letters"
  project = var.project_id
  labels  = local.labels

  kms_key_name = var.pubsub_kms_key_name

  depends_on = [google_project_service.enabled]
}

# Audit entries -> on_run_event. The ack deadline equals the function's request timeout (600 s):
# one registration may wait for a lease and then watch a deployment for up to 300 s.
resource "google_pubsub_subscription" "run_events" {
  name    = "${var.name_prefix}-run-events"
  project = var.project_id
  topic   = google_pubsub_topic.run_events.id
  labels  = local.labels

  ack_deadline_seconds       = 600
  message_retention_duration = "604800s"

  push_config {
    # The topic in the path lets functions-framework fill the CloudEvent source
    # (//pubsub.googleapis.com/projects/P/topics/T); Cloud Run serves any path.
    push_endpoint = "${google_cloud_run_v2_service.function["on-run-event"].uri}/projects/${var.project_id}/topics/${google_pubsub_topic.run_events.name}"

    oidc_token {
      service_account_email = google_service_account.this["push-invoker"].email
      audience              = google_cloud_run_v2_service.function["on-run-event"].uri
    }
  }

  retry_policy {
    minimum_backoff = var.retry_minimum_backoff
    maximum_backoff = var.retry_maximum_backoff
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letters.id
    max_delivery_attempts = var.max_delivery_attempts
  }

  expiration_policy {
    ttl = "" # never expires, however quiet the fleet is
  }
}

# Commands -> on_command. The topic carries operators' commands (gcloud, Cloud Scheduler: no
# attributes) and the Secret Manager notifications of secrets that list it (attribute eventType).
# Only SECRET_ROTATE needs on_command: the filter keeps the rest off the subscription, above all
# the TOPIC_CONFIGURED test message Secret Manager sends, without data, whenever a secret's topics
# are set (it would otherwise end up in the dead-letter topic). Pub/Sub acknowledges what the
# filter drops. A subscription's filter cannot be changed in place: Terraform replaces it.
resource "google_pubsub_subscription" "commands" {
  name    = "${var.name_prefix}-commands"
  project = var.project_id
  topic   = google_pubsub_topic.commands.id
  labels  = local.labels
  filter  = "NOT attributes:eventType OR attributes.eventType = \"SECRET_ROTATE\""

  ack_deadline_seconds       = 600
  message_retention_duration = "604800s"

  push_config {
    push_endpoint = "${google_cloud_run_v2_service.function["on-command"].uri}/projects/${var.project_id}/topics/${google_pubsub_topic.commands.name}"

    oidc_token {
      service_account_email = google_service_account.this["push-invoker"].email
      audience              = google_cloud_run_v2_service.function["on-command"].uri
    }
  }

  retry_policy {
    minimum_backoff = var.retry_minimum_backoff
    maximum_backoff = var.retry_maximum_backoff
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letters.id
    max_delivery_attempts = var.max_delivery_attempts
  }

  expiration_policy {
    ttl = ""
  }
}

# Monitoring incidents -> pulled by the latency-tickets job every few minutes. A run acknowledges
# only after the ledger write and tracker call, hence the long ack deadline (shared/gatehouse/tickets/job.py).
resource "google_pubsub_subscription" "alerts_tickets" {
  name    = "${var.name_prefix}-alerts-tickets"
  project = var.project_id
  topic   = google_pubsub_topic.alerts.id
  labels  = local.labels

  ack_deadline_seconds       = 600
  message_retention_duration = "604800s"

  retry_policy {
    minimum_backoff = var.retry_minimum_backoff
    maximum_backoff = var.retry_maximum_backoff
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letters.id
    max_delivery_attempts = var.max_delivery_attempts
  }

  expiration_policy {
    ttl = ""
  }
}

# Parking lot for dead letters (no dead-letter policy of its own: nothing reads it automatically).
resource "google_pubsub_subscription" "dead_letters" {
  name    = "${var.name_prefix}-dead-letters"
  project = var.project_id
  topic   = google_pubsub_topic.dead_letters.id
  labels  = local.labels

  ack_deadline_seconds       = 60
  message_retention_duration = "604800s"
  retain_acked_messages      = false

  expiration_policy {
    ttl = ""
  }
}
