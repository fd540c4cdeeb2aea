output "intake_queue_url" {
  description = "URL of the intake queue (the worker long-polls it)."
  value       = aws_sqs_queue.intake.id
}

output "intake_queue_arn" {
  description = "ARN of the intake queue (event source of the intake function)."
  value       = aws_sqs_queue.intake.arn
}

output "dlq_url" {
  description = "URL of the dead-letter queue."
  value       = aws_sqs_queue.dlq.id
}

output "dlq_arn" {
  description = "ARN of the dead-letter queue."
  value       = aws_sqs_queue.dlq.arn
}
