# TMI on MinIO (a NAS): buckets, versioning, object lock on intake, ILM, optional SSE via KES, one MinIO
# user + policy per principal, and the intake ObjectCreated notification to a webhook target that posts
# the S3 event records to the gateway's /events/s3 route (MinIO has no SQS).
#
# MinIO bucket policies only govern anonymous access, so the per-principal rules are enforced by the
# user policies (storage-policies/user-policies, S3 statements only); buckets stay private (no anonymous
# policy at all), which is MinIO's "no public access".

locals {
  # MinIO user names double as the principals' names in the policies' ARNs.
  users = {
    intake_writer = "tmi-intake-writer"
    pipeline      = "tmi-pipeline"
    researcher    = "tmi-researcher"
    admin         = "tmi-admin"
  }
  webhook_target = "tmi"
  queue_arn      = "arn:minio:sqs::${local.webhook_target}:webhook"
}

module "policies" {
  source = "../../modules/policies"

  account_id        = "minio"
  region            = var.region
  intake_bucket     = var.intake_bucket
  research_bucket   = var.research_bucket
  quarantine_bucket = var.quarantine_bucket
  principals        = { for who, name in local.users : who => "arn:aws:iam::minio:user/${name}" }
}

resource "minio_s3_bucket" "this" {
  for_each = module.policies.buckets

  bucket         = each.value.name
  acl            = "private"
  object_locking = each.value.object_lock
}

resource "minio_s3_bucket_versioning" "this" {
  for_each = { for role, b in module.policies.buckets : role => b if b.versioning }

  bucket = minio_s3_bucket.this[each.key].bucket
  versioning_configuration {
    status = "Enabled"
  }
}

resource "minio_s3_bucket_object_lock_configuration" "this" {
  for_each = module.policies.object_lock

  bucket              = minio_s3_bucket.this[each.key].bucket
  object_lock_enabled = "Enabled"
  rule {
    default_retention {
      mode = jsondecode(each.value).Rule.DefaultRetention.Mode
      days = lookup(jsondecode(each.value).Rule.DefaultRetention, "Days", null)
    }
  }
  depends_on = [minio_s3_bucket_versioning.this]
}

resource "minio_s3_bucket_server_side_encryption" "this" {
  for_each = { for role, b in module.policies.buckets : role => b if var.kes_key_name != null }

  bucket          = minio_s3_bucket.this[each.key].bucket
  encryption_type = "aws:kms"
  kms_key_id      = var.kes_key_name
}

resource "minio_ilm_policy" "this" {
  for_each = module.policies.lifecycle_rules

  bucket = minio_s3_bucket.this[each.key].bucket

  dynamic "rule" {
    # Abort-only rules are not persisted by MinIO (it cleans stale multipart uploads itself).
    for_each = [
      for r in jsondecode(each.value) : r
      if length(setintersection(keys(r), ["Expiration", "NoncurrentVersionExpiration", "Transitions"])) > 0
    ]
    content {
      id         = rule.value.ID
      status     = rule.value.Status
      filter     = lookup(lookup(rule.value, "Filter", {}), "Prefix", "")
      expiration = contains(keys(rule.value), "Expiration") ? "${rule.value.Expiration.Days}d" : null

      dynamic "noncurrent_expiration" {
        for_each = contains(keys(rule.value), "NoncurrentVersionExpiration") ? [rule.value.NoncurrentVersionExpiration] : []
        content {
          days = "${noncurrent_expiration.value.NoncurrentDays}d"
        }
      }

      dynamic "transition" {
        # A transition needs a configured tier; STANDARD_IA and friends do not exist on MinIO.
        for_each = [for t in lookup(rule.value, "Transitions", []) : t if var.transition_tier != null]
        content {
          days          = "${transition.value.Days}d"
          storage_class = var.transition_tier
        }
      }
    }
  }
  depends_on = [minio_s3_bucket_versioning.this]
}

resource "minio_iam_user" "this" {
  for_each = local.users

  name   = each.value
  secret = var.user_secrets[each.key]
}

resource "minio_iam_policy" "this" {
  for_each = module.policies.minio_user_policies

  name   = "${local.users[each.key]}-policy"
  policy = each.value
}

resource "minio_iam_user_policy_attachment" "this" {
  for_each = local.users

  user_name   = minio_iam_user.this[each.key].id
  policy_name = minio_iam_policy.this[each.key].id
}

resource "minio_notify_webhook" "tmi" {
  name        = local.webhook_target
  endpoint    = "${trimsuffix(var.gateway_url, "/")}/events/s3"
  auth_token  = var.webhook_auth_token
  queue_dir   = var.webhook_queue_dir
  queue_limit = 100000
  comment     = "TMI intake ObjectCreated events -> gateway /events/s3"
}

resource "minio_s3_bucket_notification" "intake" {
  bucket = minio_s3_bucket.this["intake"].bucket

  dynamic "queue" {
    for_each = module.policies.notification
    content {
      id            = queue.value.id
      queue_arn     = local.queue_arn
      events        = queue.value.events
      filter_prefix = queue.value.filter_prefix
      filter_suffix = queue.value.filter_suffix
    }
  }
  depends_on = [minio_notify_webhook.tmi]
}
