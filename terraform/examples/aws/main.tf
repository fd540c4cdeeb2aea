# TMI on AWS: buckets + policies (storage-policies/), queue + DLQ + notification, IAM policies per
# principal, the intake/republish functions, the HTTP API gateway, and the crosswalk database.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  # Role ARNs are known from their names, which keeps module.policies free of resource dependencies.
  pipeline_role_arn = "arn:${local.partition}:iam::${local.account_id}:role/${var.name_prefix}-pipeline"
  gateway_role_arn  = "arn:${local.partition}:iam::${local.account_id}:role/${var.name_prefix}-gateway"

  environment = merge(var.extra_environment, {
    TMI_INTAKE_BUCKET     = var.intake_bucket
    TMI_RESEARCH_BUCKET   = var.research_bucket
    TMI_QUARANTINE_BUCKET = var.quarantine_bucket
    TMI_INTAKE_QUEUE      = module.policies.intake_queue.name
    TMI_INTAKE_DLQ        = module.policies.intake_dlq.name
    TMI_DATABASE_URL      = module.database.database_url
  })
}

module "policies" {
  source = "../../modules/policies"

  partition         = local.partition
  account_id        = local.account_id
  region            = var.region
  intake_bucket     = var.intake_bucket
  research_bucket   = var.research_bucket
  quarantine_bucket = var.quarantine_bucket
  kms_key_arn       = var.kms_key_arn
  principals = {
    intake_writer = var.intake_writer_principal_arn
    pipeline      = local.pipeline_role_arn
    researcher    = coalesce(var.researcher_principal_arn, local.gateway_role_arn)
    admin         = var.admin_principal_arn
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
}

module "queue" {
  source = "../../modules/queue"

  intake_queue     = module.policies.intake_queue
  intake_dlq       = module.policies.intake_dlq
  intake_bucket_id = module.storage.intake_bucket_id
  notification     = module.policies.notification
}

module "access" {
  source = "../../modules/access"

  name_prefix   = var.name_prefix
  user_policies = module.policies.user_policies
}

module "database" {
  source = "../../modules/database"

  database_url    = var.database_url
  create_rds      = var.create_rds
  name_prefix     = var.name_prefix
  master_password = var.rds_master_password
}

module "functions" {
  source = "../../modules/functions"

  name_prefix         = var.name_prefix
  package_path        = var.package_path
  intake_queue_arn    = module.queue.intake_queue_arn
  pipeline_policy_arn = module.access.policy_arns["pipeline"]
  environment         = local.environment
  subnet_ids          = var.subnet_ids
  security_group_ids  = var.security_group_ids
  timeout_s           = min(60, tonumber(module.policies.template_variables.queue_visibility_timeout_s) - 1)
}

module "gateway" {
  source = "../../modules/gateway"

  name_prefix        = var.name_prefix
  package_path       = var.package_path
  policy_arns        = [module.access.policy_arns["researcher"]]
  environment        = local.environment
  subnet_ids         = var.subnet_ids
  security_group_ids = var.security_group_ids
}
