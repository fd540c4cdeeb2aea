output "bucket_names" {
  description = "Bucket per role: set TMI_INTAKE_BUCKET / TMI_RESEARCH_BUCKET / TMI_QUARANTINE_BUCKET."
  value       = module.storage.bucket_names
}

output "intake_queue_url" {
  description = "Intake queue URL (TMI_INTAKE_QUEUE is its name)."
  value       = module.queue.intake_queue_url
}

output "dlq_url" {
  description = "Dead-letter queue URL."
  value       = module.queue.dlq_url
}

output "gateway_url" {
  description = "Base URL of the gateway HTTP API."
  value       = module.gateway.api_endpoint
}

output "iam_policy_arns" {
  description = "IAM policy per principal; attach intake_writer to the intake Orthanc's identity and admin to the admins'."
  value       = module.access.policy_arns
}
