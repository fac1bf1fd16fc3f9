#!/usr/bin/env bash
# archive_command for continuous archiving (see archiving.conf):
#   archive-wal.sh %p %f ARCHIVE_DIR [S3_URI]
# Copies one WAL segment into ARCHIVE_DIR durably (temp file, fsync, rename), then optionally
# to S3_URI/<segment> with the AWS CLI. Exits 0 only once the segment is stored: PostgreSQL
# keeps the segment and retries until then. A segment already archived with the same content
# (a retry after a crash) is success; with other content it is an error, never overwritten.
set -euo pipefail

if [[ $# -lt 3 ]]; then
  echo "usage: $0 WAL_PATH WAL_NAME ARCHIVE_DIR [S3_URI]" >&2
  exit 2
fi
src=$1 name=$2 archive=$3 s3=${4:-}
dest="$archive/$name"

if [[ -e "$dest" ]]; then
  if cmp -s "$src" "$dest"; then
    exit 0
  fi
  echo "archive-wal: $dest exists with different content; refusing to overwrite" >&2
  exit 1
fi

tmp="$dest.tmp.$$"
trap 'rm -f "$tmp"' EXIT
cp "$src" "$tmp"
sync "$tmp"
mv "$tmp" "$dest"
sync "$archive"
trap - EXIT

if [[ -n "$s3" ]]; then
  aws s3 cp --only-show-errors --sse aws:kms "$dest" "$s3/$name"
fi
