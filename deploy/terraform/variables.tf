variable "environment" {
  description = "Environment name: dev or prod."
  type        = string

  validation {
    condition     = contains(["dev", "prod"], var.environment)
    error_message = "environment must be dev or prod."
  }
}

variable "region" {
  description = "AWS region."
  type        = string
  default     = "eu-central-1"
}

variable "dr_region" {
  description = "The second region, holding copies of the database backups and the backup bucket."
  type        = string
  default     = "eu-west-1"
}

variable "azs" {
  description = "The three availability zones of the VPC."
  type        = list(string)
  default     = ["eu-central-1a", "eu-central-1b", "eu-central-1c"]
}

variable "vpc_cidr" {
  description = "The VPC's /16 (dev 10.10.0.0/16, prod 10.20.0.0/16; the k8s overlays use the same numbers)."
  type        = string
  default     = "10.20.0.0/16"
}

variable "single_nat_gateway" {
  description = "One NAT gateway instead of one per zone (dev only)."
  type        = bool
  default     = false
}

variable "kubernetes_version" {
  description = "EKS Kubernetes version."
  type        = string
  default     = "1.28"
}

variable "node_instance_types" {
  description = "Instance types of the EKS managed node group."
  type        = list(string)
  default     = ["t3.medium"]
}

variable "node_min_size" {
  description = "Minimum number of EKS nodes."
  type        = number
  default     = 2
}

variable "node_max_size" {
  description = "Maximum number of EKS nodes."
  type        = number
  default     = 10
}

variable "cluster_endpoint_public_access_cidrs" {
  description = "CIDRs allowed to reach the EKS public API endpoint."
  type        = list(string)
}

variable "db_instance_class" {
  description = "RDS instance class (primary and replica): deploy/capacity.json's rds.instance_class."
  type        = string
  default     = "db.m6i.large"
}

variable "redis_node_type" {
  description = "ElastiCache node type of the catalogue cache: deploy/capacity.json's redis.elasticache_node_type."
  type        = string
  default     = "cache.m6g.large"
}

variable "db_engine_version" {
  description = "RDS PostgreSQL version."
  type        = string
  default     = "15.4"
}

variable "db_allocated_storage" {
  description = "RDS initial storage, GiB."
  type        = number
  default     = 100
}

variable "db_max_allocated_storage" {
  description = "RDS storage autoscaling ceiling, GiB."
  type        = number
  default     = 500
}

variable "db_multi_az" {
  description = "Multi-AZ primary."
  type        = bool
  default     = true
}

variable "db_backup_retention_days" {
  description = "RDS automated backup retention in days."
  type        = number
  default     = 7
}

variable "db_deletion_protection" {
  description = "Deletion protection of the database instances."
  type        = bool
  default     = true
}

variable "github_repository" {
  description = "owner/name of the GitHub repository whose deploy workflow may assume the deploy role."
  type        = string
}

variable "create_github_oidc_provider" {
  description = "Create the account's GitHub Actions OIDC provider (false when another stack in the account already did)."
  type        = bool
  default     = true
}

variable "mq_instance_type" {
  description = "Amazon MQ (RabbitMQ) broker instance type."
  type        = string
  default     = "mq.m5.large"
}

variable "mq_multi_az" {
  description = "Amazon MQ as a three-node cluster across zones (production) or one broker."
  type        = bool
  default     = true
}
