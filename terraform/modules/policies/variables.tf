variable "policies_dir" {
  description = "Path to the repository's storage-policies/ folder (the single source of the storage rules)."
  type        = string
  default     = null
}

variable "partition" {
  description = "AWS partition used in ARNs (aws, aws-cn, aws-us-gov); MinIO uses aws."
  type        = string
  default     = "aws"
}

variable "account_id" {
  description = "Account that owns the queues (LocalStack: 000000000000)."
  type        = string
}

variable "region" {
  description = "Region of the queues and buckets."
  type        = string
}

variable "intake_bucket" {
  description = "Name of the intake bucket (raw instances, PHI); TMI_INTAKE_BUCKET."
  type        = string
  default     = "tmi-intake"
}

variable "research_bucket" {
  description = "Name of the research bucket (de-identified instances); TMI_RESEARCH_BUCKET."
  type        = string
  default     = "tmi-research"
}

variable "quarantine_bucket" {
  description = "Name of the quarantine bucket (instances held for review, PHI); TMI_QUARANTINE_BUCKET."
  type        = string
  default     = "tmi-quarantine"
}

variable "intake_prefix" {
  description = "Key prefix under which the intake Orthanc writes instances; TMI_INTAKE_PREFIX."
  type        = string
  default     = "incoming/"
}

variable "intake_queue" {
  description = "Name of the queue receiving the intake bucket's ObjectCreated events; TMI_INTAKE_QUEUE."
  type        = string
  default     = "tmi-intake-events"
}

variable "intake_dlq" {
  description = "Name of the intake queue's dead-letter queue; TMI_INTAKE_DLQ."
  type        = string
  default     = "tmi-intake-dlq"
}

variable "queue_visibility_timeout_s" {
  description = "Visibility timeout of the intake queue in seconds (at least the function timeout); TMI_QUEUE_VISIBILITY_TIMEOUT_S."
  type        = number
  default     = 120
}

variable "queue_max_receive_count" {
  description = "Receives before a message moves to the dead-letter queue; TMI_QUEUE_MAX_RECEIVE_COUNT."
  type        = number
  default     = 5
}

variable "principals" {
  description = "ARNs of the intake writer (intake Orthanc), pipeline, researcher and admin principals."
  type = object({
    intake_writer = string
    pipeline      = string
    researcher    = string
    admin         = string
  })
}

variable "kms_key_arn" {
  description = "KMS key for SSE-KMS default encryption; null selects SSE-S3 (AES256)."
  type        = string
  default     = null
}
