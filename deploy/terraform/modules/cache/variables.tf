variable "name" {
  description = "Name prefix (e.g. shop-prod)."
  type        = string
}

variable "vpc_id" {
  description = "VPC of the cache."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets of the cache nodes (the database subnets), one per zone."
  type        = list(string)
}

variable "allowed_cidr_blocks" {
  description = "The only sources allowed to reach Redis: the private app subnets."
  type        = list(string)
}

variable "node_type" {
  description = "ElastiCache node type (deploy/capacity.json's redis.elasticache_node_type)."
  type        = string
  default     = "cache.m6g.large"
}

variable "engine_version" {
  description = "Redis version."
  type        = string
  default     = "7.1"
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
