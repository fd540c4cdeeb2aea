terraform {
  # Provider-free on purpose: `terraform validate` and the consistency test run it offline.
  required_version = ">= 1.0.0"
}
