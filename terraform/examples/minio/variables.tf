variable "minio_server" {
  description = "MinIO S3 API host:port on the NAS (e.g. nas.clinic.local:9000)."
  type        = string
}

variable "minio_ssl" {
  description = "Use HTTPS to reach MinIO (the bucket rules assume TLS for PHI; keep true outside a lab)."
  type        = bool
  default     = true
}

variable "minio_admin_user" {
  description = "MinIO admin (root) user Terraform authenticates with."
  type        = string
  sensitive   = true
}

variable "minio_admin_password" {
  description = "MinIO admin (root) password."
  type        = string
  sensitive   = true
}

variable "region" {
  description = "MinIO region (MINIO_SITE_REGION); us-east-1 unless configured."
  type        = string
  default     = "us-east-1"
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

variable "kes_key_name" {
  description = "KES key name for SSE-KMS default encryption (MinIO needs KES for any SSE); null skips default encryption."
  type        = string
  default     = null
}

variable "transition_tier" {
  description = "Name of a MinIO ILM tier (mc ilm tier add) for the intake transition rule; null skips transitions."
  type        = string
  default     = null
}

variable "gateway_url" {
  description = "Base URL of the TMI gateway as MinIO reaches it; the webhook posts to <gateway_url>/events/s3."
  type        = string
}

variable "webhook_auth_token" {
  description = "Bearer token MinIO sends to the gateway's /events/s3 route (the gateway checks it)."
  type        = string
  sensitive   = true
}

variable "webhook_queue_dir" {
  description = "Directory on the MinIO host where undelivered events are kept while the gateway is down."
  type        = string
  default     = "/var/lib/minio/events/tmi"
}

variable "user_secrets" {
  description = "Secret keys of the four MinIO users: intake_writer, pipeline, researcher, admin."
  type = object({
    intake_writer = string
    pipeline      = string
    researcher    = string
    admin         = string
  })
  sensitive = true
}
