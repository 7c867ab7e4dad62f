# Firestore (native mode): per-proxy leases, per-service outcomes (`gatehouse status`) and the
# tickets ledger (one ticket per fingerprint). Set create_firestore_database = false when the
# project already has the database; gatehouse only needs roles/datastore.user on it (iam.tf).
#
# The ledger is what keeps tickets from being filed twice, so the database outlives gatehouse:
# delete protection on, and `terraform destroy` abandons it instead of deleting it.

resource "google_firestore_database" "gatehouse" {
  count = var.create_firestore_database ? 1 : 0

  project                           = var.project_id
  name                              = var.firestore_database
  location_id                       = coalesce(var.firestore_location, var.region)
  type                              = "FIRESTORE_NATIVE"
  app_engine_integration_mode       = "DISABLED"
  point_in_time_recovery_enablement = "POINT_IN_TIME_RECOVERY_ENABLED"
  delete_protection_state           = "DELETE_PROTECTION_ENABLED"
  deletion_policy                   = "ABANDON"

  depends_on = [google_project_service.enabled]
}
