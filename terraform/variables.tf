variable "table_name" {
  description = "Name of the DynamoDB table monotone uses (monotone's default is Counters)."
  type        = string
  default     = "Counters"

  validation {
    condition     = can(regex("^[a-zA-Z0-9_.-]{3,255}$", var.table_name))
    error_message = "The table name must be 3 to 255 characters of a-z, A-Z, 0-9, '_', '-' and '.'."
  }
}

variable "point_in_time_recovery" {
  description = "Enable point-in-time recovery (continuous backups) on the table."
  type        = bool
  default     = true
}

variable "deletion_protection" {
  description = "Enable deletion protection on the table; turn it off before destroying the table."
  type        = bool
  default     = true
}

variable "tags" {
  description = "Tags applied to the table and the IAM policy."
  type        = map(string)
  default     = {}
}

variable "allow_auto_create" {
  description = "Also allow dynamodb:DescribeTable and dynamodb:CreateTable on the table, so monotone may create it on first use if it is missing."
  type        = bool
  default     = false
}

variable "policy_name" {
  description = "Name of the IAM policy; null means \"monotone-<table_name>\" (cut to 128 characters)."
  type        = string
  default     = null

  validation {
    condition     = var.policy_name == null || can(regex("^[a-zA-Z0-9+=,.@_-]{1,128}$", var.policy_name))
    error_message = "The policy name must be 1 to 128 characters of a-z, A-Z, 0-9 and +=,.@_-."
  }
}

variable "role_names" {
  description = "Names of existing IAM roles to attach the policy to."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for r in var.role_names : can(regex("^[a-zA-Z0-9+=,.@_-]{1,64}$", r))])
    error_message = "Each role name must be 1 to 64 characters of a-z, A-Z, 0-9 and +=,.@_-."
  }
}
