# Buckets with their policies, lifecycle rules, default encryption, versioning, object lock and public
# access block. Every document comes from storage-policies/ through module.policies: nothing is
# written twice.

resource "aws_s3_bucket" "this" {
  for_each = var.buckets

  bucket              = each.value.name
  object_lock_enabled = each.value.object_lock
  force_destroy       = var.force_destroy
  tags                = merge(var.tags, { "tmi:role" = each.key })
}

resource "aws_s3_bucket_public_access_block" "this" {
  for_each = var.buckets

  bucket                  = aws_s3_bucket.this[each.key].id
  block_public_acls       = var.public_access_block.BlockPublicAcls
  ignore_public_acls      = var.public_access_block.IgnorePublicAcls
  block_public_policy     = var.public_access_block.BlockPublicPolicy
  restrict_public_buckets = var.public_access_block.RestrictPublicBuckets
}

resource "aws_s3_bucket_versioning" "this" {
  for_each = { for role, b in var.buckets : role => b if b.versioning }

  bucket = aws_s3_bucket.this[each.key].id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_object_lock_configuration" "this" {
  for_each = var.object_lock

  bucket = aws_s3_bucket.this[each.key].id
  rule {
    default_retention {
      mode  = jsondecode(each.value).Rule.DefaultRetention.Mode
      days  = lookup(jsondecode(each.value).Rule.DefaultRetention, "Days", null)
      years = lookup(jsondecode(each.value).Rule.DefaultRetention, "Years", null)
    }
  }
  depends_on = [aws_s3_bucket_versioning.this]
}

resource "aws_s3_bucket_server_side_encryption_configuration" "this" {
  for_each = var.buckets

  bucket = aws_s3_bucket.this[each.key].id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = var.encryption.ApplyServerSideEncryptionByDefault.SSEAlgorithm
      kms_master_key_id = lookup(var.encryption.ApplyServerSideEncryptionByDefault, "KMSMasterKeyID", null)
    }
    bucket_key_enabled = var.encryption.BucketKeyEnabled
  }
}

resource "aws_s3_bucket_policy" "this" {
  for_each = var.buckets

  bucket = aws_s3_bucket.this[each.key].id
  policy = var.bucket_policies[each.key]
  # The policy denies public access; apply it after the public access block exists.
  depends_on = [aws_s3_bucket_public_access_block.this]
}

resource "aws_s3_bucket_lifecycle_configuration" "this" {
  for_each = var.lifecycle_rules

  bucket = aws_s3_bucket.this[each.key].id

  dynamic "rule" {
    for_each = jsondecode(each.value)
    content {
      id     = rule.value.ID
      status = rule.value.Status

      filter {
        prefix = lookup(lookup(rule.value, "Filter", {}), "Prefix", "")
      }

      dynamic "transition" {
        for_each = lookup(rule.value, "Transitions", [])
        content {
          days          = transition.value.Days
          storage_class = transition.value.StorageClass
        }
      }

      dynamic "expiration" {
        for_each = contains(keys(rule.value), "Expiration") ? [rule.value.Expiration] : []
        content {
          days = expiration.value.Days
        }
      }

      dynamic "noncurrent_version_expiration" {
        for_each = contains(keys(rule.value), "NoncurrentVersionExpiration") ? [rule.value.NoncurrentVersionExpiration] : []
        content {
          noncurrent_days = noncurrent_version_expiration.value.NoncurrentDays
        }
      }

      dynamic "abort_incomplete_multipart_upload" {
        for_each = contains(keys(rule.value), "AbortIncompleteMultipartUpload") ? [rule.value.AbortIncompleteMultipartUpload] : []
        content {
          days_after_initiation = abort_incomplete_multipart_upload.value.DaysAfterInitiation
        }
      }
    }
  }
  # Lifecycle rules on noncurrent versions need versioning first.
  depends_on = [aws_s3_bucket_versioning.this]
}
