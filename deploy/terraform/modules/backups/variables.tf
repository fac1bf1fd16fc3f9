variable "name" {
  description = "Name prefix (shop-<env>)."
  type        = string
}

variable "source_db_instance_arn" {
  description = "ARN of the RDS primary whose automated backups are replicated to the DR region."
  type        = string
}

variable "db_backup_retention_days" {
  description = "Days the replicated automated backups (and their transaction logs) are kept in the DR region."
  type        = number
}

variable "logical_backup_expiry_days" {
  description = "Days logical backups (dumps + Vault snapshots) are kept in both buckets."
  type        = number
  default     = 365
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
