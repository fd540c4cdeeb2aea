output "bucket_names" {
  description = "Bucket name per role (intake, research, quarantine)."
  value       = { for role, b in aws_s3_bucket.this : role => b.bucket }
}

output "bucket_arns" {
  description = "Bucket ARN per role."
  value       = { for role, b in aws_s3_bucket.this : role => b.arn }
}

output "intake_bucket_id" {
  description = "ID (name) of the intake bucket, for the notification."
  value       = aws_s3_bucket.this["intake"].id
}
