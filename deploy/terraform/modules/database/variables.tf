variable "name" {
  description = "Name prefix (e.g. shop-prod)."
  type        = string
}

variable "vpc_id" {
  description = "VPC of the database."
  type        = string
}

variable "database_subnet_ids" {
  description = "Private database subnets, one per zone."
  type        = list(string)
}

variable "allowed_cidr_blocks" {
  description = "The only sources allowed to reach PostgreSQL: the private app subnets."
  type        = list(string)
}

variable "engine_version" {
  description = "PostgreSQL version."
  type        = string
  default     = "15.4"
}

variable "instance_class" {
  description = "Instance class of the primary and the replica."
  type        = string
  default     = "db.t3.medium"
}

variable "allocated_storage" {
  description = "Initial storage in GiB."
  type        = number
  default     = 100
}

variable "max_allocated_storage" {
  description = "Storage autoscaling ceiling in GiB."
  type        = number
  default     = 500
}

variable "multi_az" {
  description = "Synchronous standby in another zone for the primary."
  type        = bool
  default     = true
}

variable "backup_retention_days" {
  description = "Automated backup retention."
  type        = number
  default     = 7
}

variable "deletion_protection" {
  description = "Refuse to delete the primary (turn off explicitly before a teardown)."
  type        = bool
  default     = true
}

variable "master_username" {
  description = "Administrator user; its password is generated and kept in Secrets Manager by RDS."
  type        = string
  default     = "shop_admin"
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
