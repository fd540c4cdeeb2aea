variable "name_prefix" {
  description = "Prefix of the API, function and role names (e.g. tmi-prod)."
  type        = string
  default     = "tmi"
}

variable "package_path" {
  description = "Path of the Lambda zip built by terraform/build-lambda-package.sh (includes gateway/ and mangum)."
  type        = string
}

variable "handler" {
  description = "Handler of the gateway function (FastAPI app wrapped by mangum)."
  type        = string
  default     = "gateway.lambda_handler.handler"
}

variable "runtime" {
  description = "Lambda Python runtime."
  type        = string
  default     = "python3.11"
}

variable "memory_mb" {
  description = "Memory of the gateway function in MB."
  type        = number
  default     = 512
}

variable "timeout_s" {
  description = "Timeout of the gateway function in seconds (API Gateway's own limit is 30)."
  type        = number
  default     = 29
}

variable "policy_arns" {
  description = "IAM policies attached to the gateway role; the researcher policy lets it sign presigned GETs on research."
  type        = list(string)
}

variable "environment" {
  description = "Environment of the gateway function (TMI_* settings, TMI_DATABASE_URL, ...)."
  type        = map(string)
  default     = {}
  sensitive   = true
}

variable "subnet_ids" {
  description = "Subnets for the function when the database is in a VPC; empty for no VPC."
  type        = list(string)
  default     = []
}

variable "security_group_ids" {
  description = "Security groups of the function when subnet_ids is set."
  type        = list(string)
  default     = []
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
