# The audit-log sink that turns Cloud Run deploys into run-events messages.
#
# Cloud Run writes an Admin Activity audit entry (always on, free) for every service create,
# update and delete. Which method name appears depends on the API the client used (gcloud, the
# console and Terraform differ), so the filter names both families, all six literally:
#   v1 (Knative API): CreateService, ReplaceService, DeleteService
#   v2:               CreateService, UpdateService,  DeleteService
# SetIamPolicy is left out on purpose: gatehouse's own invoker grants would come back as events.
# Long-running operations produce a first and a last entry; on_run_event skips `operation.first`.
#
# sink_scope picks exactly one sink (count): a project sink for a fleet in one project, or an
# aggregated folder/organization sink with include_children for a fleet spread over many projects.

locals {
  sink_name = "${var.name_prefix}-run-events"

  sink_filter = <<-EOT
    logName:"cloudaudit.googleapis.com%2Factivity"
    AND protoPayload.serviceName="run.googleapis.com"
    AND (
      protoPayload.methodName="google.cloud.run.v1.Services.CreateService"
      OR protoPayload.methodName="google.cloud.run.v1.Services.ReplaceService"
      OR protoPayload.methodName="google.cloud.run.v1.Services.DeleteService"
      OR protoPayload.methodName="google.cloud.run.v2.Services.CreateService"
      OR protoPayload.methodName="google.cloud.run.v2.Services.UpdateService"
      OR protoPayload.methodName="google.cloud.run.v2.Services.DeleteService"
    )
  EOT

  sink_destination = "pubsub.googleapis.com/${google_pubsub_topic.run_events.id}"

  # The identity the sink writes as ("serviceAccount:..."); it gets roles/pubsub.publisher on the
  # run-events topic through the service-agent map in iam.tf.
  sink_writer_identity = one(concat(
    google_logging_project_sink.run_events[*].writer_identity,
    google_logging_folder_sink.run_events[*].writer_identity,
    google_logging_organization_sink.run_events[*].writer_identity,
  ))
}

resource "google_logging_project_sink" "run_events" {
  count = var.sink_scope == "project" ? 1 : 0

  name        = local.sink_name
  project     = coalesce(var.sink_parent, var.project_id)
  description = "gatehouse: Cloud Run service create/update/delete audit entries -> Pub/Sub"
  destination = local.sink_destination
  filter      = local.sink_filter

  # A dedicated writer identity, so the publisher grant names this sink and nothing else.
  unique_writer_identity = true
}

resource "google_logging_folder_sink" "run_events" {
  count = var.sink_scope == "folder" ? 1 : 0

  name             = local.sink_name
  folder           = var.sink_parent
  description      = "gatehouse: Cloud Run service create/update/delete audit entries of every project under this folder -> Pub/Sub"
  destination      = local.sink_destination
  filter           = local.sink_filter
  include_children = true

  lifecycle {
    precondition {
      condition     = var.sink_parent != null
      error_message = "sink_scope = folder needs sink_parent = the folder id."
    }
  }
}

resource "google_logging_organization_sink" "run_events" {
  count = var.sink_scope == "organization" ? 1 : 0

  name             = local.sink_name
  org_id           = var.sink_parent
  description      = "gatehouse: Cloud Run service create/update/delete audit entries of every project in the organization -> Pub/Sub"
  destination      = local.sink_destination
  filter           = local.sink_filter
  include_children = true

  lifecycle {
    precondition {
      condition     = var.sink_parent != null
      error_message = "sink_scope = organization needs sink_parent = the organization id."
    }
  }
}
