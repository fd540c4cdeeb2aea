variable "intake_queue" {
  description = "Intake queue from module.policies.intake_queue: name, arn, attributes, redrive_policy, policy."
  type = object({
    name           = string
    arn            = string
    attributes     = map(string)
    redrive_policy = string
    policy         = string
  })
}

variable "intake_dlq" {
  description = "Dead-letter queue from module.policies.intake_dlq: name, arn, attributes."
  type = object({
    name       = string
    arn        = string
    attributes = map(string)
  })
}

variable "intake_bucket_id" {
  description = "Name of the intake bucket whose ObjectCreated events feed the queue (module.storage.intake_bucket_id)."
  type        = string
}

variable "notification" {
  description = "Queue notifications of the intake bucket (module.policies.notification): id, queue_arn, events, filter_prefix, filter_suffix."
  type = list(object({
    id            = string
    queue_arn     = string
    events        = list(string)
    filter_prefix = string
    filter_suffix = string
  }))
}

variable "tags" {
  description = "Tags added to both queues."
  type        = map(string)
  default     = {}
}
