variable "buckets" {
  description = "Per bucket role (intake, research, quarantine): name, versioning and object-lock flags (module.policies.buckets)."
  type = map(object({
    name        = string
    versioning  = bool
    object_lock = bool
  }))
}

variable "bucket_policies" {
  description = "Bucket policy JSON per bucket role (module.policies.bucket_policies)."
  type        = map(string)
}

variable "lifecycle_rules" {
  description = "Lifecycle rules as a JSON list (S3 API shape) per bucket role (module.policies.lifecycle_rules)."
  type        = map(string)
}

variable "object_lock" {
  description = "Object lock configuration as JSON (S3 API shape) per bucket role that has one (module.policies.object_lock)."
  type        = map(string)
}

variable "encryption" {
  description = "Default encryption rule in the S3 API shape (module.policies.encryption)."
  type        = any
}

variable "public_access_block" {
  description = "Public access block flags (module.policies.public_access_block)."
  type = object({
    BlockPublicAcls       = bool
    IgnorePublicAcls      = bool
    BlockPublicPolicy     = bool
    RestrictPublicBuckets = bool
  })
}

variable "force_destroy" {
  description = "Allow terraform destroy to delete non-empty buckets (never for production PHI buckets)."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags added to every bucket."
  type        = map(string)
  default     = {}
}
