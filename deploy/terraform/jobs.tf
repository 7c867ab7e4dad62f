# Cloud Run jobs: same image, command `python -m jobs.<module>`. Started by Cloud Scheduler
# (scheduler.tf) and, for `{"command": "reconcile", "service": "all"}`, by on_command.
#
# Retries: the reconcile sweep and the rotation are level-triggered / resumable (a killed rotation
# resumes from the state recorded on the secret), so one retry of a failed task is safe. The tickets
# job runs every five minutes and leaves unprocessed messages unacknowledged for the next run, so it
# is not retried.

locals {
  jobs = {
    "reconcile" = {
      module          = "jobs.reconcile"
      service_account = "reconcile"
      timeout         = "3600s"
      max_retries     = 1
      env = {
        GATEHOUSE_RECONCILE_MODE          = "apply" # the nightly sweep converges; `plan` via a command
        GATEHOUSE_APIGEE_CALLS_PER_MINUTE = tostring(var.apigee_calls_per_minute["reconcile"])
        GATEHOUSE_INVENTORY_BUCKET        = google_storage_bucket.inventory.name # inventory.tf
        # the inventory lists the open tickets: the tracker and the token's secret name, never its value
        GATEHOUSE_TICKETS_TRACKER      = var.ticket_tracker
        GATEHOUSE_TICKETS_TARGET       = var.ticket_tracker_target
        GATEHOUSE_TICKETS_TRACKER_URL  = var.ticket_tracker_url
        GATEHOUSE_TICKETS_TOKEN_SECRET = "${google_secret_manager_secret.tracker_token.id}/versions/latest"
      }
    }
    "rotate-credentials" = {
      module          = "jobs.rotate_credentials"
      service_account = "rotate"
      timeout         = "1800s"
      max_retries     = 1
      env = {
        GATEHOUSE_ROTATION_JOB_IDENTITY = google_service_account.this["rotate"].email # never rotated by itself
      }
    }
    "latency-tickets" = {
      module          = "jobs.latency_tickets"
      service_account = "tickets"
      timeout         = "900s"
      max_retries     = 0
      # Setting names for jobs/latency_tickets (written alongside this module): keep them in step
      # with its settings loader.
      env = {
        GATEHOUSE_TICKETS_SUBSCRIPTION = google_pubsub_subscription.alerts_tickets.id
        GATEHOUSE_TICKETS_TRACKER      = var.ticket_tracker
        GATEHOUSE_TICKETS_TARGET       = var.ticket_tracker_target
        GATEHOUSE_TICKETS_TRACKER_URL  = var.ticket_tracker_url
        # The secret's name, not its value: the job reads the latest version at run time, so the
        # token never appears in the job spec or in Terraform state.
        GATEHOUSE_TICKETS_TOKEN_SECRET = "${google_secret_manager_secret.tracker_token.id}/versions/latest"
      }
    }
  }
}

resource "google_cloud_run_v2_job" "job" {
  for_each = local.jobs

  name                = "${var.name_prefix}-${each.key}"
  project             = var.project_id
  location            = var.region
  deletion_protection = var.deletion_protection
  labels              = local.labels

  template {
    task_count  = 1
    parallelism = 1
    labels      = local.labels

    template {
      service_account = google_service_account.this[each.value.service_account].email
      timeout         = each.value.timeout
      max_retries     = each.value.max_retries

      containers {
        image   = var.image
        command = ["python", "-m", each.value.module]

        resources {
          limits = {
            cpu    = "1"
            memory = "1Gi"
          }
        }

        dynamic "env" {
          for_each = merge(local.common_env, each.value.env)
          content {
            name  = env.key
            value = env.value
          }
        }
      }
    }
  }

  depends_on = [google_project_service.enabled]
}
