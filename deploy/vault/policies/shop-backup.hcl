# shop-backup: the backup CronJob (`shop backup`). A read-only database login for pg_dump and
# Vault's own raft snapshot, which every backup includes (docs/disaster-recovery.md).
# Nothing else: it cannot restore a snapshot (sys/storage/raft/snapshot-force), read secrets
# outside the snapshot's encrypted stream, or touch other leases.

# A dynamic PostgreSQL login with pg_read_all_data (the `backup` database role).
path "database/creds/backup" {
  capabilities = ["read"]
}

# GET /v1/sys/storage/raft/snapshot: the whole storage, encrypted by Vault's barrier keys
# (and again, with age, by `shop backup` before it is written anywhere).
path "sys/storage/raft/snapshot" {
  capabilities = ["read"]
}
