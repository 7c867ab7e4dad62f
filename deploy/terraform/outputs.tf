output "topics" {
  description = "Pub/Sub topic names."
  value = {
    run_events   = google_pubsub_topic.run_events.name
    commands     = google_pubsub_topic.commands.name
    alerts       = google_pubsub_topic.alerts.name
    dead_letters = google_pubsub_topic.dead_letters.name
  }
}

output "commands_topic" {
  description = "Topic for command messages (gcloud pubsub topics publish ...); used by the smoke check."
  value       = google_pubsub_topic.commands.name
}

output "subscriptions" {
  description = "Pub/Sub subscription names."
  value = {
    run_events     = google_pubsub_subscription.run_events.name
    commands       = google_pubsub_subscription.commands.name
    alerts_tickets = google_pubsub_subscription.alerts_tickets.name
    dead_letters   = google_pubsub_subscription.dead_letters.name
  }
}

output "function_urls" {
  description = "URLs of the function services (internal ingress: reachable by Pub/Sub push, not from the internet)."
  value       = { for k, s in google_cloud_run_v2_service.function : k => s.uri }
}

output "project_id" {
  description = "The gatehouse project (where the functions log)."
  value       = var.project_id
}

output "smoke_service" {
  description = "Service the post-deploy smoke check asks on_command to plan: a name in the first fleet project that no one deploys, so the plan reads Cloud Run and Apigee and changes nothing."
  value       = "projects/${local.fleet_projects[0]}/locations/${local.fleet_regions[0]}/services/${var.name_prefix}-smoke-check"
}

output "function_services" {
  description = "Cloud Run service names of the functions."
  value       = { for k, s in google_cloud_run_v2_service.function : k => s.name }
}

output "job_names" {
  description = "Cloud Run job names (gcloud run jobs execute NAME --region REGION)."
  value       = { for k, j in google_cloud_run_v2_job.job : k => j.name }
}

output "scheduler_jobs" {
  description = "Cloud Scheduler job names."
  value       = { for k, j in google_cloud_scheduler_job.job : k => j.name }
}

output "service_account_emails" {
  description = "Email of every gatehouse service account."
  value       = { for k, sa in google_service_account.this : k => sa.email }
}

output "proxy_service_account" {
  description = "GATEHOUSE_PROXY_SERVICE_ACCOUNT: the identity Apigee calls registered services with."
  value       = google_service_account.this["apigee-proxy"].email
}

output "sink_writer_identity" {
  description = "Writer identity of the audit-log sink (holds roles/pubsub.publisher on the run-events topic)."
  value       = local.sink_writer_identity
}

output "tracker_token_secret" {
  description = "Secret that must receive the tracker token (gcloud secrets versions add)."
  value       = google_secret_manager_secret.tracker_token.secret_id
}

output "alerts_notification_channel" {
  description = "Pub/Sub notification channel that feeds the tickets job; add it to other alert policies to ticket them too."
  value       = google_monitoring_notification_channel.alerts.id
}

output "freeze_scheduler_jobs" {
  description = "The Scheduler jobs `gatehouse freeze` pauses (GATEHOUSE_SCHEDULER_FREEZE_JOBS for an operator's CLI, with GATEHOUSE_SCHEDULER_LOCATION = region)."
  value       = [for id in local.freeze_scheduler_jobs : "projects/${var.project_id}/locations/${var.region}/jobs/${id}"]
}
