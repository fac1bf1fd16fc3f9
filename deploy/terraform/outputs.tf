output "cluster_name" {
  description = "aws eks update-kubeconfig --name <this> --region <region>"
  value       = module.eks.cluster_name
}

output "cluster_endpoint" {
  description = "EKS API endpoint."
  value       = module.eks.cluster_endpoint
}

output "cluster_autoscaler_role_arn" {
  description = "IRSA role for kube-system/cluster-autoscaler."
  value       = module.eks.cluster_autoscaler_role_arn
}

output "oidc_provider_arn" {
  description = "The cluster's IAM OIDC provider (IRSA)."
  value       = module.eks.oidc_provider_arn
}

output "vpc_id" {
  description = "VPC id."
  value       = module.network.vpc_id
}

output "app_subnet_cidrs" {
  description = "Private app subnets."
  value       = module.network.app_subnet_cidrs
}

output "database_subnet_cidrs" {
  description = "Database subnets: the allow-database-egress NetworkPolicy's ipBlocks in the overlay."
  value       = module.network.database_subnet_cidrs
}

output "db_primary_address" {
  description = "RDS primary host: the postgres ExternalName Service in the overlay."
  value       = module.database.primary_address
}

output "db_replica_address" {
  description = "RDS read replica host."
  value       = module.database.replica_address
}

output "db_master_user_secret_arn" {
  description = "Secrets Manager secret of the RDS administrator (read by scripts/vault-setup.sh)."
  value       = module.database.master_user_secret_arn
}

output "github_deploy_role_arn" {
  description = "Set as the AWS_DEPLOY_ROLE_ARN variable of the GitHub environment."
  value       = aws_iam_role.github_deploy.arn
}

output "backup_bucket" {
  description = "BACKUP_BUCKET of the backup CronJob's ConfigMap."
  value       = module.backups.bucket
}

output "backup_replica_bucket" {
  description = "The backup bucket's replica in the DR region."
  value       = module.backups.replica_bucket
}

output "replicated_automated_backups_arn" {
  description = "RDS automated backups in the DR region, for a PITR there."
  value       = module.backups.replicated_automated_backups_arn
}

output "redis_primary_address" {
  description = "The catalogue cache's ElastiCache primary (SHOP_REDIS_URL=rediss://:<token>@<this>:6379/0)."
  value       = module.cache.primary_endpoint_address
}

output "redis_auth_token_secret_arn" {
  description = "Secrets Manager secret holding the ElastiCache AUTH token."
  value       = module.cache.auth_token_secret_arn
}

output "mq_amqp_endpoint" {
  description = "Amazon MQ's amqps:// endpoint; SHOP_AMQP_URL in Vault is built from it."
  value       = module.mq.amqp_endpoint
}
