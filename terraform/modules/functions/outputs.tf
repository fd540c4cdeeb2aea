output "function_arns" {
  description = "ARN per function (intake, republish, reconcile)."
  value       = { for k, f in aws_lambda_function.this : k => f.arn }
}

output "pipeline_role_arn" {
  description = "ARN of the pipeline role: pass it as the pipeline principal of module.policies."
  value       = aws_iam_role.pipeline.arn
}
