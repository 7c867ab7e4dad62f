terraform {
  # terraform_data and lifecycle preconditions guard the IAM map and the Apigee quota budget;
  # startswith/endswith are used in validations. 1.5 is the oldest release this is written for.
  required_version = ">= 1.5"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 6.0"
    }
    # google_project_service_identity (the Pub/Sub service agent) exists only in google-beta.
    google-beta = {
      source  = "hashicorp/google-beta"
      version = "~> 6.0"
    }
  }

  # State: local by default so the module works out of the box. CI (cloudbuild.yaml) writes a
  # backend_override.tf with `backend "gcs" {}` and passes the bucket to `terraform init`; do the
  # same for any shared installation (see README.md, "Deploy to Google Cloud").
}
