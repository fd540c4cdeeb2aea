output "bucket_names" {
  description = "Bucket per role (TMI_INTAKE_BUCKET, TMI_RESEARCH_BUCKET, TMI_QUARANTINE_BUCKET)."
  value       = { for role, b in minio_s3_bucket.this : role => b.bucket }
}

output "users" {
  description = "MinIO user per principal (access key = user name; secret from var.user_secrets)."
  value       = { for who, u in minio_iam_user.this : who => u.name }
}

output "webhook_restart_required" {
  description = "True when MinIO must be restarted (mc admin service restart) before the webhook target is active."
  value       = minio_notify_webhook.tmi.restart_required
}

output "notification_queue_arn" {
  description = "MinIO ARN of the webhook target the intake bucket notifies."
  value       = local.queue_arn
}
