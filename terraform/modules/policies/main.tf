# Renders every document in storage-policies/ with templatefile(): the Terraform twin of
# adapters.bootstrap.plan(). The per-role wiring below mirrors adapters.bootstrap.BUCKET_WIRING;
# tests/unit/infra/test_consistency.py fails when they drift apart.

locals {
  dir = coalesce(var.policies_dir, "${path.module}/../../../storage-policies")

  sqs_arn_prefix = "arn:${var.partition}:sqs:${var.region}:${var.account_id}"

  # The same placeholder names adapters/bootstrap.py substitutes.
  vars = {
    partition                   = var.partition
    account_id                  = var.account_id
    region                      = var.region
    intake_bucket               = var.intake_bucket
    research_bucket             = var.research_bucket
    quarantine_bucket           = var.quarantine_bucket
    intake_prefix               = var.intake_prefix
    intake_queue                = var.intake_queue
    intake_queue_arn            = "${local.sqs_arn_prefix}:${var.intake_queue}"
    intake_dlq                  = var.intake_dlq
    intake_dlq_arn              = "${local.sqs_arn_prefix}:${var.intake_dlq}"
    queue_visibility_timeout_s  = tostring(var.queue_visibility_timeout_s)
    queue_max_receive_count     = tostring(var.queue_max_receive_count)
    intake_writer_principal_arn = var.principals.intake_writer
    pipeline_principal_arn      = var.principals.pipeline
    researcher_principal_arn    = var.principals.researcher
    admin_principal_arn         = var.principals.admin
    kms_key_arn                 = var.kms_key_arn == null ? "" : var.kms_key_arn
  }

  buckets = {
    intake = {
      name        = var.intake_bucket
      policy      = "bucket-policies/intake.json"
      lifecycle   = "lifecycle/intake.json"
      versioning  = true
      object_lock = "object-lock/intake.json"
    }
    research = {
      name        = var.research_bucket
      policy      = "bucket-policies/research.json"
      lifecycle   = "lifecycle/research.json"
      versioning  = true
      object_lock = null
    }
    quarantine = {
      name        = var.quarantine_bucket
      policy      = "bucket-policies/quarantine.json"
      lifecycle   = "lifecycle/quarantine.json"
      versioning  = true
      object_lock = null
    }
  }

  user_policy_files = {
    intake_writer = ["user-policies/intake-writer.json"]
    pipeline      = ["user-policies/pipeline.json", "user-policies/pipeline-queue.json"]
    researcher    = ["user-policies/researcher.json"]
    admin         = ["user-policies/admin.json", "user-policies/admin-queue.json"]
  }

  encryption_file = var.kms_key_arn == null ? "encryption/sse-s3.json" : "encryption/sse-kms.json"

  bucket_policies = { for role, b in local.buckets : role => jsondecode(templatefile("${local.dir}/${b.policy}", local.vars)) }
  lifecycles      = { for role, b in local.buckets : role => jsondecode(templatefile("${local.dir}/${b.lifecycle}", local.vars)) }
  object_locks = {
    for role, b in local.buckets : role => jsondecode(templatefile("${local.dir}/${b.object_lock}", local.vars))
    if b.object_lock != null
  }
  encryption          = jsondecode(templatefile("${local.dir}/${local.encryption_file}", local.vars))
  public_access_block = jsondecode(templatefile("${local.dir}/public-access-block.json", local.vars))
  notification        = jsondecode(templatefile("${local.dir}/notifications/intake.json", local.vars))
  intake_queue        = jsondecode(templatefile("${local.dir}/queues/intake.json", local.vars))
  intake_dlq          = jsondecode(templatefile("${local.dir}/queues/intake-dlq.json", local.vars))
  queue_policy        = jsondecode(templatefile("${local.dir}/queues/intake-queue-policy.json", local.vars))
  user_policies = {
    for who, files in local.user_policy_files : who => [
      for f in files : jsondecode(templatefile("${local.dir}/${f}", local.vars))
    ]
  }
  # One policy document per principal (statements of all its files), as IAM and MinIO attach them.
  # MinIO has no SQS, so its policies use only the S3 files (the first of each list).
  merged_user_policies = {
    for who, docs in local.user_policies : who => {
      Version   = "2012-10-17"
      Statement = flatten([for d in docs : d.Statement])
    }
  }
}
