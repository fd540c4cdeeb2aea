variable "localstack_endpoint" {
  description = "LocalStack gateway URL (localstack/run-host.sh prints it; the container publishes http://127.0.0.1:4566)."
  type        = string
  default     = "http://127.0.0.1:4566"
}

variable "region" {
  description = "Region LocalStack emulates."
  type        = string
  default     = "us-east-1"
}

variable "account_id" {
  description = "LocalStack's default account."
  type        = string
  default     = "000000000000"
}

variable "intake_bucket" {
  description = "Intake bucket name (TMI_INTAKE_BUCKET)."
  type        = string
  default     = "tmi-intake"
}

variable "research_bucket" {
  description = "Research bucket name (TMI_RESEARCH_BUCKET)."
  type        = string
  default     = "tmi-research"
}

variable "quarantine_bucket" {
  description = "Quarantine bucket name (TMI_QUARANTINE_BUCKET)."
  type        = string
  default     = "tmi-quarantine"
}

variable "force_destroy" {
  description = "Let terraform destroy empty the buckets (fine for a rehearsal)."
  type        = bool
  default     = true
}
