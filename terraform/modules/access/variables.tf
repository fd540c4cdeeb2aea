variable "name_prefix" {
  description = "Prefix of the IAM policy names (e.g. tmi-prod)."
  type        = string
  default     = "tmi"
}

variable "user_policies" {
  description = "One IAM policy JSON per principal: intake_writer, pipeline, researcher, admin (module.policies.user_policies)."
  type        = map(string)
}

variable "attach_to_roles" {
  description = "Optional IAM role name per principal to attach its policy to (e.g. { pipeline = \"tmi-lambda\" })."
  type        = map(string)
  default     = {}
}

variable "tags" {
  description = "Tags added to the policies."
  type        = map(string)
  default     = {}
}
