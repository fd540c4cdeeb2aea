variable "name_prefix" {
  description = "Prefix of the function and role names (e.g. tmi-prod)."
  type        = string
  default     = "tmi"
}

variable "package_path" {
  description = "Path of the Lambda zip built by terraform/build-lambda-package.sh (tmi, adapters, functions and their dependencies)."
  type        = string
}

variable "runtime" {
  description = "Lambda Python runtime."
  type        = string
  default     = "python3.11"
}

variable "intake_handler" {
  description = "Handler of the intake function (S3-in-SQS records → de-identify → publish)."
  type        = string
  default     = "functions.intake_handler.handler"
}

variable "republish_handler" {
  description = "Handler of the republish function (crosswalk merge/split work items → re-publish)."
  type        = string
  default     = "functions.republish_handler.handler"
}

variable "reconcile_handler" {
  description = "Handler of the reconcile function (intake objects whose notification was lost → re-enqueued)."
  type        = string
  default     = "functions.reconcile_handler.handler"
}

variable "memory_mb" {
  description = "Memory of each function in MB."
  type        = number
  default     = 1024
}

variable "timeout_s" {
  description = "Timeout of each function in seconds; keep it below the intake queue's visibility timeout."
  type        = number
  default     = 60
}

variable "reconcile_timeout_s" {
  description = "Timeout of the reconcile function in seconds: it lists the intake day folders of the look-back window (TMI_PIPELINE_RECONCILE_LOOKBACK_DAYS) and sends the unfinished objects to the queue."
  type        = number
  default     = 300
}

variable "intake_queue_arn" {
  description = "ARN of the intake queue (module.queue.intake_queue_arn): event source of the intake function."
  type        = string
}

variable "batch_size" {
  description = "Messages per intake invocation; failures are reported per item (ReportBatchItemFailures)."
  type        = number
  default     = 10
}

variable "republish_schedule" {
  description = "EventBridge schedule expression for the republish function; null disables the schedule."
  type        = string
  default     = "rate(1 minute)"
}

variable "reconcile_schedule" {
  description = "EventBridge schedule expression for the reconcile function; null disables the schedule (then run `tmi reconcile` elsewhere)."
  type        = string
  default     = "rate(10 minutes)"
}

variable "pipeline_policy_arn" {
  description = "IAM policy of the pipeline principal (module.access.policy_arns[\"pipeline\"]), attached to the functions' role."
  type        = string
}

variable "environment" {
  description = "Environment of both functions: TMI_* settings (bucket/queue names, TMI_DATABASE_URL, TMI_DEID_KEY_FILE, ...)."
  type        = map(string)
  default     = {}
  sensitive   = true
}

variable "subnet_ids" {
  description = "Subnets for the functions when the database is in a VPC; empty for no VPC."
  type        = list(string)
  default     = []
}

variable "security_group_ids" {
  description = "Security groups of the functions when subnet_ids is set."
  type        = list(string)
  default     = []
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
