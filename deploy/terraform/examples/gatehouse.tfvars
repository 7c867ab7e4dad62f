# Example: copy, edit, then
#   terraform -chdir=deploy/terraform init
#   terraform -chdir=deploy/terraform apply -var-file=examples/gatehouse.tfvars
# (paths in -var-file are relative to the -chdir directory)

project_id = "acme-gatehouse"
region     = "europe-west1"

# The image cloudbuild.yaml pushed, by commit SHA (never :latest: a rollback is the previous SHA).
image = "europe-west1-docker.pkg.dev/acme-gatehouse/gatehouse/gatehouse:0f3c2a9d5b7e41c8a6f2d1e0b9c8a7d6e5f4a3b2"

apigee_organization = "acme-apigee"
apigee_environments = ["test", "prod"]
owner_id            = "gatehouse-acme"
policy              = "upsert-only"

# The fleet lives in two projects under one folder: an aggregated folder sink sees both.
fleet_projects = ["acme-shop-prod", "acme-payments-prod"]
fleet_regions  = ["europe-west1", "europe-west4"]
sink_scope     = "folder"
sink_parent    = "123456789012"

# Rotation: secrets in the shop project; key admin on these two accounts only.
rotation_projects = ["acme-shop-prod"]
rotated_service_accounts = [
  "partner-export@acme-shop-prod.iam.gserviceaccount.com",
  "legacy-ftp@acme-shop-prod.iam.gserviceaccount.com",
]

ticket_tracker                 = "github"
ticket_tracker_target          = "acme/platform-routing"
ticket_tracker_token_secret_id = "gatehouse-tracker-token"

time_zone                   = "Europe/Berlin"
proxy_latency_threshold_ms  = 2000
target_latency_threshold_ms = 1500

# The project already runs Firestore for something else.
create_firestore_database = false
