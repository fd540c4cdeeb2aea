output "database_url" {
  description = "DSN TMI uses as TMI_DATABASE_URL (the RDS instance's, or database_url as given)."
  value       = var.create_rds ? local.rds_url : var.database_url
  sensitive   = true
}
