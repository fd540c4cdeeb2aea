output "policy_arns" {
  description = "IAM policy ARN per principal."
  value       = { for who, p in aws_iam_policy.this : who => p.arn }
}
