variable "database_url" {
  description = "DSN of an existing PostgreSQL database (postgresql://user:pass@host:5432/tmi); ignored when create_rds is true."
  type        = string
  default     = null
  sensitive   = true
}

variable "create_rds" {
  description = "Create a small RDS PostgreSQL instance instead of using database_url."
  type        = bool
  default     = false
}

variable "name_prefix" {
  description = "Identifier prefix of the RDS instance."
  type        = string
  default     = "tmi"
}

variable "instance_class" {
  description = "RDS instance class when create_rds is true."
  type        = string
  default     = "db.t4g.micro"
}

variable "allocated_storage_gb" {
  description = "RDS storage in GB when create_rds is true."
  type        = number
  default     = 20
}

variable "engine_version" {
  description = "PostgreSQL major version of the RDS instance."
  type        = string
  default     = "15"
}

variable "master_username" {
  description = "RDS master user name."
  type        = string
  default     = "tmi"
}

variable "master_password" {
  description = "RDS master password (required when create_rds is true; keep it in a secret store or TF_VAR_)."
  type        = string
  default     = null
  sensitive   = true
}

variable "db_subnet_group_name" {
  description = "DB subnet group of the RDS instance (private subnets)."
  type        = string
  default     = null
}

variable "vpc_security_group_ids" {
  description = "Security groups of the RDS instance."
  type        = list(string)
  default     = []
}

variable "tags" {
  description = "Tags added to the RDS instance."
  type        = map(string)
  default     = {}
}
