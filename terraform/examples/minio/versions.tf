terraform {
  required_version = ">= 1.0.0"
  required_providers {
    minio = {
      source  = "aminueza/minio"
      version = ">= 3.0"
    }
  }
}

provider "minio" {
  minio_server   = var.minio_server
  minio_user     = var.minio_admin_user
  minio_password = var.minio_admin_password
  minio_ssl      = var.minio_ssl
  minio_region   = var.region
}
