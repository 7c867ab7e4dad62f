# The nightly inventory page (README "Inventory"): the reconcile job writes inventory.html and
# inventory.json here after its sweep. One private bucket, read by one group, never public.

resource "google_storage_bucket" "inventory" {
  project                     = var.project_id
  name                        = coalesce(var.inventory_bucket_name, "${var.project_id}-${var.name_prefix}-inventory")
  location                    = var.inventory_bucket_location
  labels                      = local.labels
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = !var.deletion_protection

  # every night overwrites both files: versioning keeps the earlier nights to compare with
  versioning {
    enabled = true
  }

  # ... for a while: noncurrent copies go after var.inventory_history_days
  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.inventory_history_days
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  logging {
    log_bucket = coalesce(var.inventory_access_log_bucket, "${var.project_id}-${var.name_prefix}-inventory")
  }

  depends_on = [google_project_service.enabled]
}

# the reconcile job writes (and overwrites) the two objects
resource "google_storage_bucket_iam_member" "inventory_writer" {
  bucket = google_storage_bucket.inventory.name
  role   = "roles/storage.objectUser"
  member = "serviceAccount:${google_service_account.this["reconcile"].email}"
}

# the platform team reads the page (console or `gcloud storage cat`); nobody else does
resource "google_storage_bucket_iam_member" "inventory_readers" {
  for_each = toset(var.inventory_readers)
  bucket   = google_storage_bucket.inventory.name
  role     = "roles/storage.objectViewer"
  member   = each.value
}
