output "vpc_id" {
  description = "The VPC's id."
  value       = aws_vpc.this.id
}

output "vpc_cidr" {
  description = "The VPC's CIDR block."
  value       = aws_vpc.this.cidr_block
}

output "public_subnet_ids" {
  description = "Public subnets (load balancers, NAT gateways), one per zone."
  value       = aws_subnet.public[*].id
}

output "app_subnet_ids" {
  description = "Private application subnets (EKS nodes and pods), one per zone."
  value       = aws_subnet.app[*].id
}

output "app_subnet_cidrs" {
  description = "CIDR blocks of the private application subnets."
  value       = aws_subnet.app[*].cidr_block
}

output "database_subnet_ids" {
  description = "Private database subnets, one per zone."
  value       = aws_subnet.database[*].id
}

output "database_subnet_cidrs" {
  description = "CIDR blocks of the database subnets (copy into the k8s overlay's NetworkPolicy)."
  value       = aws_subnet.database[*].cidr_block
}
