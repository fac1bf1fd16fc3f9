variable "name" {
  description = "Name prefix of every resource (e.g. shop-prod)."
  type        = string
}

variable "cluster_name" {
  description = "EKS cluster name, for the subnet discovery tags of the AWS load balancer controller."
  type        = string
}

variable "vpc_cidr" {
  description = "The VPC's CIDR block; must be a /16 for the subnet layout below."
  type        = string

  validation {
    condition     = can(cidrhost(var.vpc_cidr, 0)) && endswith(var.vpc_cidr, "/16")
    error_message = "vpc_cidr must be a valid /16 CIDR block."
  }
}

variable "azs" {
  description = "Exactly three availability zones."
  type        = list(string)

  validation {
    condition     = length(var.azs) == 3
    error_message = "The platform spans exactly three availability zones."
  }
}

variable "single_nat_gateway" {
  description = "One NAT gateway for all zones (cheaper, dev) instead of one per zone (HA, prod)."
  type        = bool
  default     = false
}

variable "flow_log_retention_days" {
  description = "Retention of the VPC flow logs in CloudWatch."
  type        = number
  default     = 365
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
