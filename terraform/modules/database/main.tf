# The crosswalk database: an existing PostgreSQL (database_url), or an optional encrypted RDS instance.

resource "aws_db_instance" "this" {
  count = var.create_rds ? 1 : 0

  identifier                 = "${var.name_prefix}-crosswalk"
  engine                     = "postgres"
  engine_version             = var.engine_version
  instance_class             = var.instance_class
  allocated_storage          = var.allocated_storage_gb
  db_name                    = "tmi"
  username                   = var.master_username
  password                   = var.master_password
  db_subnet_group_name       = var.db_subnet_group_name
  vpc_security_group_ids     = var.vpc_security_group_ids
  storage_encrypted          = true
  publicly_accessible        = false
  backup_retention_period    = 7
  deletion_protection        = true
  skip_final_snapshot        = false
  final_snapshot_identifier  = "${var.name_prefix}-crosswalk-final"
  auto_minor_version_upgrade = true
  tags                       = var.tags
}

locals {
  # A for over the (0 or 1) instances, so nothing indexes a missing instance when create_rds is false.
  rds_url = one([
    for db in aws_db_instance.this : format(
      "postgresql://%s:%s@%s/tmi?sslmode=require",
      var.master_username, urlencode(var.master_password == null ? "" : var.master_password), db.endpoint
    )
  ])
}
