variable "region" {
  description = "AWS region of every resource."
  type        = string
  default     = "eu-west-1"
}

variable "name_prefix" {
  description = "Prefix of role, function and policy names."
  type        = string
  default     = "tmi"
}

variable "intake_bucket" {
  description = "Intake bucket name (globally unique on AWS)."
  type        = string
}

variable "research_bucket" {
  description = "Research bucket name (globally unique on AWS)."
  type        = string
}

variable "quarantine_bucket" {
  description = "Quarantine bucket name (globally unique on AWS)."
  type        = string
}

variable "intake_writer_principal_arn" {
  description = "ARN of the identity the intake Orthanc writes with (an IAM role or user)."
  type        = string
}

variable "researcher_principal_arn" {
  description = "ARN of the researcher identity; null uses the gateway's role (it signs presigned research URLs)."
  type        = string
  default     = null
}

variable "admin_principal_arn" {
  description = "ARN of the admin identity that reviews the quarantine."
  type        = string
}

variable "kms_key_arn" {
  description = "KMS key for SSE-KMS; null keeps SSE-S3."
  type        = string
  default     = null
}

variable "package_path" {
  description = "Lambda zip built by terraform/build-lambda-package.sh."
  type        = string
  default     = "../../../dist/tmi-lambda.zip"
}

variable "database_url" {
  description = "DSN of an existing PostgreSQL (used when create_rds is false)."
  type        = string
  default     = null
  sensitive   = true
}

variable "create_rds" {
  description = "Create an RDS PostgreSQL instance for the crosswalk."
  type        = bool
  default     = false
}

variable "rds_master_password" {
  description = "Master password of the RDS instance when create_rds is true."
  type        = string
  default     = null
  sensitive   = true
}

variable "subnet_ids" {
  description = "Private subnets for the functions and RDS (empty: no VPC)."
  type        = list(string)
  default     = []
}

variable "security_group_ids" {
  description = "Security groups of the functions when subnet_ids is set."
  type        = list(string)
  default     = []
}

variable "extra_environment" {
  description = "More environment for the functions and the gateway (e.g. TMI_DEID_KEY_FILE, TMI_RESEARCH_ORTHANC_*)."
  type        = map(string)
  default     = {}
  sensitive   = true
}
