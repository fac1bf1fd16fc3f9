#!/usr/bin/env bash
# A base backup for point-in-time recovery, verified, with retention:
#   base-backup.sh BACKUP_ROOT [KEEP]
# Connects with the usual libpq variables (PGHOST, PGPORT, PGUSER: a role with REPLICATION).
# Writes BACKUP_ROOT/<UTC time>/ (plain format, WAL streamed in, a SHA-256 backup manifest),
# checks it with pg_verifybackup, keeps the newest KEEP (default 7) and, when WAL_ARCHIVE_DIR
# is set, removes archived WAL older than the oldest base backup kept (pg_archivecleanup).
# Run it daily (cron or a systemd timer); PG_BIN picks the client binaries (>= the server's
# major version), default: the folder of pg_config on PATH.
set -euo pipefail

root=${1:?usage: base-backup.sh BACKUP_ROOT [KEEP]}
keep=${2:-7}
bin=${PG_BIN:-$(pg_config --bindir)}
name=$(date -u +%Y%m%dT%H%M%SZ)

mkdir -p "$root"
"$bin/pg_basebackup" --pgdata="$root/$name.partial" --format=plain --wal-method=stream \
  --checkpoint=fast --manifest-checksums=SHA256 --label="shop-$name" --no-password
"$bin/pg_verifybackup" "$root/$name.partial"
mv "$root/$name.partial" "$root/$name"
echo "base backup $root/$name"

mapfile -t backups < <(find "$root" -mindepth 1 -maxdepth 1 -type d -name '*Z' | sort)
if (( ${#backups[@]} > keep )); then
  for old in "${backups[@]:0:${#backups[@]}-keep}"; do
    rm -rf "$old"
    echo "deleted $old"
  done
  backups=("${backups[@]: -keep}")
fi
if [[ -n "${WAL_ARCHIVE_DIR:-}" ]]; then
  # backup_label names the first WAL segment the oldest kept backup needs.
  first=$(sed -n 's/^START WAL LOCATION: .*(file \([0-9A-F]\{24\}\))$/\1/p' "${backups[0]}/backup_label")
  "$bin/pg_archivecleanup" "$WAL_ARCHIVE_DIR" "$first"
fi
