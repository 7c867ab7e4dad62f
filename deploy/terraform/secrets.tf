# The tracker token (GitHub token or Jira API token) for the latency-tickets job.
#
# Terraform creates the secret and its IAM only, never a version: a value written here would sit in
# plain text in the Terraform state. A human adds the value once (README.md, "Deploy to Google Cloud"):
#
#   printf '%s' "$TOKEN" | gcloud secrets versions add gatehouse-tracker-token --data-file=- --project=PROJECT
#
# The job reads versions/latest at run time, so rotating the token is another `versions add`.

locals {
  secret_ids = {
    "tracker-token" = google_secret_manager_secret.tracker_token.id
  }
}

resource "google_secret_manager_secret" "tracker_token" {
  project   = var.project_id
  secret_id = var.ticket_tracker_token_secret_id
  labels    = local.labels

  replication {
    auto {}
  }

  depends_on = [google_project_service.enabled]
}
