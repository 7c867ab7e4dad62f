# on_run_event and on_command: the CloudEvent functions of functions/main.py, deployed as Cloud Run
# services from the one image (FUNCTION_TARGET picks the function) and fed by the authenticated
# push subscriptions in pubsub.tf.
#
# Sizing: throughput is bounded by Apigee's management quota, not by CPU.
#
#   Apigee allows 6,000 management calls a minute per organization (100 calls/s).
#   Every process limits itself with GATEHOUSE_APIGEE_CALLS_PER_MINUTE: one token bucket shared by
#   all requests in the process (WORKERS=1: one process per instance). Worst case, every instance
#   of everything that calls the management API running flat out:
#
#     on-run-event   max_instances 3 x 1,200/min = 3,600/min
#     on-command     max_instances 1 x   600/min =   600/min
#     reconcile job  1 task        x 1,200/min = 1,200/min
#                                                -----------
#                                                5,400/min <= 6,000/min
#
#   The 600/min left over is for people, CI and the Apigee console (and the tickets job's bundle
#   reads). The precondition below refuses a configuration whose sum exceeds the quota.
#
#   Concurrency: one instance may make 1,200/60 = 20 calls/s. A request in flight makes about
#   1 call/s (3 reads for an unchanged service; import, label, change report and deploy for a
#   change, then one deployment poll every 2 s per environment while it is watched), so
#   20 requests x 1 call/s = 20 calls/s fills the instance's budget. More concurrency would only
#   hold Pub/Sub messages open while they queue on the rate limiter; less would leave quota unused
#   during a burst. 3 instances x 20 = 60 events in flight; a burst of thousands of deploy events
#   waits in Pub/Sub (push backs off when the service answers 429), not in memory.
#
# Ingress is internal-only: Pub/Sub push from the same project counts as internal traffic, and
# nothing else needs to reach these services. The request timeout (600 s) equals the push
# subscriptions' ack deadline.

locals {
  functions = {
    "on-run-event" = {
      target          = "on_run_event"
      max_instances   = var.on_run_event_max_instances
      calls_per_min   = var.apigee_calls_per_minute["on-run-event"]
      service_account = "on-run-event"
    }
    "on-command" = {
      target          = "on_command"
      max_instances   = var.on_command_max_instances
      calls_per_min   = var.apigee_calls_per_minute["on-command"]
      service_account = "on-command"
    }
  }

  # Worst-case management calls per minute of the whole installation (see the table above).
  apigee_worst_case_per_minute = sum([
    var.on_run_event_max_instances * var.apigee_calls_per_minute["on-run-event"],
    var.on_command_max_instances * var.apigee_calls_per_minute["on-command"],
    1 * var.apigee_calls_per_minute["reconcile"], # the reconcile job runs one task
  ])
}

resource "google_cloud_run_v2_service" "function" {
  for_each = local.functions

  name                = "${var.name_prefix}-${each.key}"
  project             = var.project_id
  location            = var.region
  description         = "gatehouse ${each.value.target} (CloudEvent function, fed by a Pub/Sub push subscription)"
  ingress             = "INGRESS_TRAFFIC_INTERNAL_ONLY"
  deletion_protection = var.deletion_protection
  labels              = local.labels

  template {
    service_account                  = google_service_account.this[each.value.service_account].email
    timeout                          = "600s"
    max_instance_request_concurrency = var.function_concurrency
    labels                           = local.labels

    scaling {
      min_instance_count = var.function_min_instances
      max_instance_count = each.value.max_instances
    }

    containers {
      image = var.image

      resources {
        limits = {
          cpu    = "1"
          memory = "512Mi"
        }
        cpu_idle          = true # CPU only while a request is in flight
        startup_cpu_boost = true
      }

      dynamic "env" {
        for_each = merge(local.common_env, {
          FUNCTION_TARGET                   = each.value.target
          FUNCTION_SIGNATURE_TYPE           = "cloudevent"
          GATEHOUSE_APIGEE_CALLS_PER_MINUTE = tostring(each.value.calls_per_min)
          GATEHOUSE_RECONCILE_JOB           = google_cloud_run_v2_job.job["reconcile"].id
          GATEHOUSE_ROTATE_JOB              = google_cloud_run_v2_job.job["rotate-credentials"].id
          GATEHOUSE_TICKETS_JOB             = google_cloud_run_v2_job.job["latency-tickets"].id
          # on_command rotates one secret inline; its own identity is never rotated by itself
          GATEHOUSE_ROTATION_JOB_IDENTITY = google_service_account.this[each.value.service_account].email
          # functions-framework runs gunicorn: one process (one rate limiter) with as many
          # threads as Cloud Run sends concurrent requests.
          WORKERS = "1"
          THREADS = tostring(var.function_concurrency)
        })
        content {
          name  = env.key
          value = env.value
        }
      }
    }
  }

  lifecycle {
    precondition {
      condition     = local.apigee_worst_case_per_minute <= var.apigee_quota_per_minute
      error_message = "max instances x GATEHOUSE_APIGEE_CALLS_PER_MINUTE of on-run-event, on-command and the reconcile job add up to ${local.apigee_worst_case_per_minute}/min, more than Apigee's ${var.apigee_quota_per_minute}/min management quota."
    }
  }

  depends_on = [google_project_service.enabled]
}
