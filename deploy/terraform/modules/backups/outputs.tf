output "bucket" {
  description = "The backup bucket in the primary region (BACKUP_BUCKET of the backup CronJob)."
  value       = aws_s3_bucket.backups.bucket
}

output "replica_bucket" {
  description = "Its replica in the DR region: where a region failover restores from."
  value       = aws_s3_bucket.replica.bucket
}

output "replicated_automated_backups_arn" {
  description = "The RDS automated backups in the DR region (restore-db-instance-to-point-in-time --source-db-instance-automated-backups-arn)."
  value       = aws_db_instance_automated_backups_replication.dr.id
}

output "dr_kms_key_arn" {
  description = "KMS key of the DR region's copies (RDS backups and the replica bucket)."
  value       = aws_kms_key.dr.arn
}
