output "template_variables" {
  description = "The placeholder values substituted into every storage-policies file."
  value       = local.vars
}

output "buckets" {
  description = "Per bucket role (intake, research, quarantine): name, versioning flag, object-lock flag."
  value = {
    for role, b in local.buckets : role => {
      name        = b.name
      versioning  = b.versioning
      object_lock = b.object_lock != null
    }
  }
}

output "bucket_policies" {
  description = "Bucket policy JSON per bucket role."
  value       = { for role, doc in local.bucket_policies : role => jsonencode(doc) }
}

output "lifecycle_rules" {
  description = "Lifecycle rules (JSON list, S3 API shape: ID, Status, Filter, Expiration, ...) per bucket role."
  # JSON strings: the rule lists differ in shape between buckets, which a for_each map cannot hold.
  value = { for role, doc in local.lifecycles : role => jsonencode(doc.Rules) }
}

output "object_lock" {
  description = "Object lock configuration (JSON, S3 API shape) per bucket role that has one."
  value       = { for role, doc in local.object_locks : role => jsonencode(doc) }
}

output "encryption" {
  description = "Default encryption rule (S3 API shape): SSE-S3, or SSE-KMS when kms_key_arn is set."
  value       = local.encryption.Rules[0]
}

output "public_access_block" {
  description = "Public access block flags applied to every bucket."
  value       = local.public_access_block
}

output "notification" {
  description = "The intake bucket's queue notification: id, queue ARN, events, prefix and suffix filters."
  value = [
    for q in local.notification.QueueConfigurations : {
      id            = q.Id
      queue_arn     = q.QueueArn
      events        = q.Events
      filter_prefix = one([for r in q.Filter.Key.FilterRules : r.Value if lower(r.Name) == "prefix"])
      filter_suffix = one([for r in q.Filter.Key.FilterRules : r.Value if lower(r.Name) == "suffix"])
    }
  ]
}

output "intake_queue" {
  description = "Intake queue: name, ARN, attributes, redrive policy (JSON) and queue policy (JSON)."
  value = {
    name           = var.intake_queue
    arn            = local.vars.intake_queue_arn
    attributes     = local.intake_queue.Attributes
    redrive_policy = jsonencode(local.intake_queue.RedrivePolicy)
    policy         = jsonencode(local.queue_policy)
  }
}

output "intake_dlq" {
  description = "Dead-letter queue: name, ARN and attributes."
  value = {
    name       = var.intake_dlq
    arn        = local.vars.intake_dlq_arn
    attributes = local.intake_dlq.Attributes
  }
}

output "user_policies" {
  description = "One IAM policy JSON per principal (all of its storage-policies/user-policies files merged)."
  value       = { for who, doc in local.merged_user_policies : who => jsonencode(doc) }
}

output "minio_user_policies" {
  description = "Per principal, the S3-only policy JSON MinIO accepts (MinIO has no SQS actions)."
  value       = { for who, docs in local.user_policies : who => jsonencode(docs[0]) }
}
