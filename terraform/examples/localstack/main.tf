# TMI's storage on LocalStack: the same modules as examples/aws, minus Lambda/API Gateway (on a laptop the
# `tmi worker` runner and the gateway process play those parts against these buckets and queues).

module "policies" {
  source = "../../modules/policies"

  account_id        = var.account_id
  region            = var.region
  intake_bucket     = var.intake_bucket
  research_bucket   = var.research_bucket
  quarantine_bucket = var.quarantine_bucket
  # The same principals adapters.bootstrap uses by default (Principals.for_account).
  principals = {
    intake_writer = "arn:aws:iam::${var.account_id}:user/tmi-intake-writer"
    pipeline      = "arn:aws:iam::${var.account_id}:user/tmi-pipeline"
    researcher    = "arn:aws:iam::${var.account_id}:user/tmi-researcher"
    admin         = "arn:aws:iam::${var.account_id}:user/tmi-admin"
  }
}

module "storage" {
  source = "../../modules/storage"

  buckets             = module.policies.buckets
  bucket_policies     = module.policies.bucket_policies
  lifecycle_rules     = module.policies.lifecycle_rules
  object_lock         = module.policies.object_lock
  encryption          = module.policies.encryption
  public_access_block = module.policies.public_access_block
  force_destroy       = var.force_destroy
}

module "queue" {
  source = "../../modules/queue"

  intake_queue     = module.policies.intake_queue
  intake_dlq       = module.policies.intake_dlq
  intake_bucket_id = module.storage.intake_bucket_id
  notification     = module.policies.notification
}
