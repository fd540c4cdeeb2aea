output "bucket_names" {
  description = "Bucket per role (TMI_INTAKE_BUCKET, TMI_RESEARCH_BUCKET, TMI_QUARANTINE_BUCKET)."
  value       = module.storage.bucket_names
}

output "intake_queue_url" {
  description = "Intake queue URL."
  value       = module.queue.intake_queue_url
}

output "dlq_url" {
  description = "Dead-letter queue URL."
  value       = module.queue.dlq_url
}

output "aws_endpoint_url" {
  description = "Value for AWS_ENDPOINT_URL when running TMI against this LocalStack."
  value       = var.localstack_endpoint
}
