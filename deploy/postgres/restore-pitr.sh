#!/usr/bin/env bash
# Point-in-time recovery from a base backup and the WAL archive:
#   restore-pitr.sh BASE_BACKUP_DIR WAL_ARCHIVE_DIR NEW_DATA_DIR 'TARGET_TIME'
# TARGET_TIME like '2026-11-26 10:14:00+00' (just before the mistake). Verifies the base
# backup (pg_verifybackup), copies it into NEW_DATA_DIR (must be empty or absent), and
# configures recovery: fetch WAL from the archive, replay up to TARGET_TIME, then promote.
# Start the server on NEW_DATA_DIR afterwards (pg_ctl start, or point the service at it).
# DRILL=1 turns archiving off in the restored copy, so a drill never writes into the
# production archive. PG_BIN as in base-backup.sh.
set -euo pipefail

base=${1:?usage: restore-pitr.sh BASE_BACKUP_DIR WAL_ARCHIVE_DIR NEW_DATA_DIR TARGET_TIME}
archive=${2:?WAL_ARCHIVE_DIR missing}
data=${3:?NEW_DATA_DIR missing}
target=${4:?TARGET_TIME missing}
bin=${PG_BIN:-$(pg_config --bindir)}

"$bin/pg_verifybackup" "$base"
if [[ -e "$data" && -n "$(ls -A "$data")" ]]; then
  echo "restore-pitr: $data is not empty" >&2
  exit 1
fi
mkdir -p "$data"
chmod 700 "$data"
cp -a "$base/." "$data/"
rm -f "$data/backup_manifest"
{
  echo "# written by restore-pitr.sh"
  echo "restore_command = 'cp \"$archive/%f\" \"%p\"'"
  echo "recovery_target_time = '$target'"
  echo "recovery_target_action = 'promote'"
  if [[ "${DRILL:-0}" == 1 ]]; then
    echo "archive_mode = off"
  fi
} >>"$data/postgresql.auto.conf"
touch "$data/recovery.signal"
echo "ready: start PostgreSQL on $data; it replays WAL up to $target, then promotes"
