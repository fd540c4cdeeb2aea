output "api_endpoint" {
  description = "Base URL of the HTTP API (the gateway; MinIO's webhook target posts to <this>/events/s3)."
  value       = aws_apigatewayv2_api.http.api_endpoint
}

output "role_arn" {
  description = "ARN of the gateway role (pass it as the researcher principal when the gateway signs research URLs)."
  value       = aws_iam_role.gateway.arn
}
