# Cloud Scheduler starts the jobs through the Cloud Run Admin API v2 (`jobs/<name>:run`).
#
# oauth_token, not oidc_token: the target is a googleapis.com API, which takes OAuth access tokens.
# The scheduler identity holds roles/run.invoker on these three jobs only (run.jobs.run; no
# overrides are sent, so run.jobs.runWithOverrides is not needed). `:run` returns as soon as the
# execution is created, so Scheduler's retries cover failures to start; failed tasks are retried by
# the job's own max_retries.
#
# time_zone is explicit: without it Scheduler evaluates the cron in UTC, which surprises people
# who read "2:30" in their own zone.

locals {
  # The jobs `gatehouse freeze` pauses and `gatehouse unfreeze` resumes (GATEHOUSE_SCHEDULER_FREEZE_JOBS):
  # the rotation run and the rollout tick. Names, not references: the Cloud Run jobs' env carries
  # this list, and the Scheduler jobs refer to the Cloud Run jobs.
  freeze_scheduler_jobs = ["${var.name_prefix}-rotate-credentials", "${var.name_prefix}-rollout-tick"]

  schedules = {
    "reconcile" = {
      schedule    = var.reconcile_schedule
      description = "gatehouse: nightly full reconcile (lost events, drift, orphans)"
      retry_count = 3
    }
    "rotate-credentials" = {
      schedule    = var.rotation_schedule
      description = "gatehouse: daily credential rotation run (age-gated: rotates what is older than ${var.rotation_period})"
      retry_count = 3
    }
    "latency-tickets" = {
      schedule    = var.tickets_schedule
      description = "gatehouse: drain Apigee latency alerts into routing-policy tickets"
      retry_count = 0 # the next run is minutes away
    }
  }
}

resource "google_cloud_scheduler_job" "job" {
  for_each = local.schedules

  name             = "${var.name_prefix}-${each.key}"
  project          = var.project_id
  region           = var.region
  description      = each.value.description
  schedule         = each.value.schedule
  time_zone        = var.time_zone
  attempt_deadline = "60s"

  retry_config {
    retry_count          = each.value.retry_count
    min_backoff_duration = "30s"
    max_backoff_duration = "300s"
    max_doublings        = 3
  }

  http_target {
    http_method = "POST"
    uri         = "https://run.googleapis.com/v2/${google_cloud_run_v2_job.job[each.key].id}:run"

    oauth_token {
      service_account_email = google_service_account.this["scheduler"].email
      scope                 = "https://www.googleapis.com/auth/cloud-platform"
    }
  }

  # The first run must not race the grant.
  depends_on = [google_cloud_run_v2_job_iam_member.grants]
}

# The rollout tick: a command on the commands topic ({"command": "rollout", "action": "tick"});
# on_command starts the reconcile job in its rollout mode. Frequent, because a tick that finds a
# wave still baking changes nothing and costs one Firestore read; a freeze pauses this job.
resource "google_cloud_scheduler_job" "rollout_tick" {
  name             = "${var.name_prefix}-rollout-tick"
  project          = var.project_id
  region           = var.region
  description      = "gatehouse: advance a fleet-wide rollout (waves, bake, health gate)"
  schedule         = var.rollout_tick_schedule
  time_zone        = var.time_zone
  attempt_deadline = "60s"

  retry_config {
    retry_count = 0 # the next tick is minutes away
  }

  pubsub_target {
    topic_name = google_pubsub_topic.commands.id
    data       = base64encode(jsonencode({ command = "rollout", action = "tick" }))
  }
}
