output "primary_address" {
  description = "Host name of the primary (set it as the postgres ExternalName in the k8s overlay)."
  value       = aws_db_instance.primary.address
}

output "primary_arn" {
  description = "ARN of the primary (source of the cross-region automated backups replication)."
  value       = aws_db_instance.primary.arn
}

output "primary_endpoint" {
  description = "host:port of the primary."
  value       = aws_db_instance.primary.endpoint
}

output "replica_address" {
  description = "Host name of the read replica (analytics)."
  value       = aws_db_instance.replica.address
}

output "master_user_secret_arn" {
  description = "Secrets Manager secret holding the administrator's credentials (for Vault's database engine)."
  value       = aws_db_instance.primary.master_user_secret[0].secret_arn
}

output "security_group_id" {
  description = "Security group of the database."
  value       = aws_security_group.db.id
}
