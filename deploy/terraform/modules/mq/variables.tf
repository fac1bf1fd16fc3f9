variable "name" {
  description = "Name prefix (e.g. shop-prod)."
  type        = string
}

variable "vpc_id" {
  description = "VPC of the broker."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets, one per zone (a cluster uses three; a single broker the first)."
  type        = list(string)
}

variable "allowed_cidr_blocks" {
  description = "The only sources allowed to reach the broker: the private app subnets."
  type        = list(string)
}

variable "engine_version" {
  description = "RabbitMQ version of Amazon MQ."
  type        = string
  default     = "3.13"
}

variable "instance_type" {
  description = "Broker instance type."
  type        = string
  default     = "mq.m5.large"
}

variable "multi_az" {
  description = "A three-node cluster across zones (production) instead of one broker."
  type        = bool
  default     = true
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
