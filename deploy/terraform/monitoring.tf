# Apigee latency alerts -> Pub/Sub notification channel -> alerts topic -> latency-tickets job.
#
# Apigee writes its metrics to the project of the Apigee organization, so the channel and the
# latency policies live there (a policy sees only its own project's metrics scope); the channel
# publishes across projects to the alerts topic in the gatehouse project. That project's Monitoring
# notification agent, service-APIGEE_PROJECT_NUMBER@gcp-sa-monitoring-notification.iam.gserviceaccount.com,
# gets roles/pubsub.publisher on the topic (iam.tf, service_agent_roles); the agent is created
# together with the project's first Pub/Sub channel, hence the ordering in iam.tf.
#
# One condition per metric, p95 over 60 s windows, firing when it stays above the threshold for
# 300 s. ALIGN_DELTA keeps each series a distribution and REDUCE_PERCENTILE_95 takes the percentile
# of the merged distribution of a group (the true p95 of a proxy over all its methods and response
# codes, rather than the worst per-series p95). Grouping by org/env/location/proxy keeps one
# incident per proxy and environment, carrying the labels the tickets job fingerprints.

locals {
  latency_alerts = {
    proxy = {
      display_name = "Apigee proxy p95 latency"
      filter       = "resource.type=\"apigee.googleapis.com/Proxy\" AND metric.type=\"apigee.googleapis.com/proxy/latencies\""
      threshold_ms = var.proxy_latency_threshold_ms
      what         = "total latency (request received by Apigee to response sent to the client)"
    }
    target = {
      display_name = "Apigee target p95 latency"
      filter       = "resource.type=\"${var.target_latency_resource_type}\" AND metric.type=\"apigee.googleapis.com/target/latencies\""
      threshold_ms = var.target_latency_threshold_ms
      what         = "target latency (request sent to the Cloud Run service to response received)"
    }
  }
}

resource "google_monitoring_notification_channel" "alerts" {
  project      = local.apigee_project_id
  display_name = "${var.name_prefix} alerts topic (latency-tickets)"
  type         = "pubsub"
  description  = "Incidents for the gatehouse latency-tickets job."
  user_labels  = local.labels

  labels = {
    topic = google_pubsub_topic.alerts.id
  }

  depends_on = [google_project_service.enabled]
}

resource "google_monitoring_alert_policy" "apigee_latency" {
  for_each = local.latency_alerts

  project      = local.apigee_project_id
  display_name = "${var.name_prefix}: ${each.value.display_name} > ${each.value.threshold_ms} ms"
  combiner     = "OR"
  severity     = "WARNING"
  user_labels  = local.labels

  conditions {
    display_name = "${each.key} p95 latency"

    condition_threshold {
      filter                  = each.value.filter
      comparison              = "COMPARISON_GT"
      threshold_value         = each.value.threshold_ms
      duration                = "300s"
      evaluation_missing_data = "EVALUATION_MISSING_DATA_NO_OP"

      aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_PERCENTILE_95"
        group_by_fields      = var.latency_alert_group_by
      }

      trigger {
        count = 1
      }
    }
  }

  notification_channels = concat([google_monitoring_notification_channel.alerts.id], var.operator_notification_channels)

  alert_strategy {
    auto_close           = "1800s"
    notification_prompts = ["OPENED", "CLOSED"] # the tickets job comments on closure
  }

  documentation {
    mime_type = "text/markdown"
    subject   = "Apigee ${each.key} p95 latency above ${each.value.threshold_ms} ms"
    content   = "The p95 ${each.value.what} of one proxy stayed above ${each.value.threshold_ms} ms for 5 minutes. gatehouse's latency-tickets job turns this incident into one routing-policy ticket (${var.ticket_tracker}: ${var.ticket_tracker_target}) with evidence and a proposed change."
  }

  depends_on = [google_pubsub_topic_iam_member.grants]
}

# Dead letters mean gatehouse gave up on a message: tell a human (the nightly reconcile converges
# registrations anyway, but a command or incident may be lost). Operator channels only: the
# tickets job is about Apigee latency.
resource "google_monitoring_alert_policy" "dead_letters" {
  project      = var.project_id
  display_name = "${var.name_prefix}: messages in the dead-letter topic"
  combiner     = "OR"
  severity     = "ERROR"
  user_labels  = local.labels

  conditions {
    display_name = "undelivered dead letters"

    condition_threshold {
      filter          = "resource.type=\"pubsub_subscription\" AND resource.label.\"subscription_id\"=\"${google_pubsub_subscription.dead_letters.name}\" AND metric.type=\"pubsub.googleapis.com/subscription/num_undelivered_messages\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "300s"

      aggregations {
        alignment_period   = "300s"
        per_series_aligner = "ALIGN_MAX"
      }
    }
  }

  notification_channels = var.operator_notification_channels

  documentation {
    mime_type = "text/markdown"
    content   = "Messages reached ${google_pubsub_topic.dead_letters.name} after ${var.max_delivery_attempts} delivery attempts. Inspect them with `gcloud pubsub subscriptions pull ${google_pubsub_subscription.dead_letters.name} --limit=10` and the ERROR logs of the gatehouse functions."
  }
}
