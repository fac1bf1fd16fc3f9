# Copies in a second region, for the loss of the primary region within the RPO (15 min):
#
# * RDS automated backups replication: the daily snapshots AND the transaction logs (shipped
#   every 5 minutes) are copied to the DR region, so point-in-time recovery works there up
#   to a few minutes before the region was lost (docs/disaster-recovery.md, "A region's loss").
# * The backup bucket (logical dumps and Vault's encrypted raft snapshots, one folder per
#   backup) replicates every object to a bucket in the DR region with S3 Replication Time
#   Control: 99.99 % of objects within 15 minutes, and a metric when one is late.
#
# The replica bucket takes only replicated objects; nobody writes to it directly.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "dr" {
  provider = aws.dr
}

locals {
  account = data.aws_caller_identity.current.account_id
  root    = "arn:${data.aws_partition.current.partition}:iam::${local.account}:root"
}

# --- keys: one per region (a KMS key never leaves its region) ---------------------------------

data "aws_iam_policy_document" "key" {
  #checkov:skip=CKV_AWS_109:Key policy: the account-root statement is the AWS default that lets IAM policies govern the key; "*" in a key policy means this key only
  #checkov:skip=CKV_AWS_111:Key policy: the account-root statement is the AWS default that lets IAM policies govern the key; "*" in a key policy means this key only
  #checkov:skip=CKV_AWS_356:Key policy: "*" as the resource of a key policy means this key only
  statement {
    sid       = "AccountAdministration"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = [local.root]
    }
  }
}

resource "aws_kms_key" "backups" {
  description             = "${var.name} backup bucket"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.key.json
  tags                    = var.tags
}

resource "aws_kms_key" "dr" {
  provider                = aws.dr
  description             = "${var.name} disaster-recovery copies (RDS automated backups, backup replica bucket)"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.key.json
  tags                    = var.tags
}

# --- RDS: automated backups and transaction logs, replicated ----------------------------------

resource "aws_db_instance_automated_backups_replication" "dr" {
  provider               = aws.dr
  source_db_instance_arn = var.source_db_instance_arn
  retention_period       = var.db_backup_retention_days
  kms_key_id             = aws_kms_key.dr.arn
}

# --- the backup bucket and its replica --------------------------------------------------------

resource "aws_s3_bucket" "backups" {
  #checkov:skip=CKV_AWS_18:Access to the backup bucket is recorded by CloudTrail data events; a separate access-log bucket adds a bucket with no readers
  #checkov:skip=CKV2_AWS_62:Nothing consumes backup-bucket events; the replication metrics and the backup job's alerts say when something is wrong
  bucket              = "${var.name}-backups-${local.account}"
  object_lock_enabled = true
  tags                = var.tags
}

resource "aws_s3_bucket" "replica" {
  #checkov:skip=CKV_AWS_144:This is the cross-region replica itself; replicating it again to a third region is not worth it
  #checkov:skip=CKV_AWS_18:Access is recorded by CloudTrail data events; a separate access-log bucket adds a bucket with no readers
  #checkov:skip=CKV2_AWS_62:Nothing consumes replica-bucket events
  provider            = aws.dr
  bucket              = "${var.name}-backups-${local.account}-${data.aws_region.dr.name}"
  object_lock_enabled = true
  tags                = var.tags
}

resource "aws_s3_bucket_versioning" "backups" {
  bucket = aws_s3_bucket.backups.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_versioning" "replica" {
  provider = aws.dr
  bucket   = aws_s3_bucket.replica.id
  versioning_configuration {
    status = "Enabled"
  }
}

# Governance-mode retention: a compromised writer cannot delete or overwrite a backup.
resource "aws_s3_bucket_object_lock_configuration" "backups" {
  bucket = aws_s3_bucket.backups.id
  rule {
    default_retention {
      mode = "GOVERNANCE"
      days = 30
    }
  }
}

resource "aws_s3_bucket_object_lock_configuration" "replica" {
  provider = aws.dr
  bucket   = aws_s3_bucket.replica.id
  rule {
    default_retention {
      mode = "GOVERNANCE"
      days = 30
    }
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "backups" {
  bucket = aws_s3_bucket.backups.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.backups.arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "replica" {
  provider = aws.dr
  bucket   = aws_s3_bucket.replica.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.dr.arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_public_access_block" "backups" {
  bucket                  = aws_s3_bucket.backups.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_public_access_block" "replica" {
  provider                = aws.dr
  bucket                  = aws_s3_bucket.replica.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_lifecycle_configuration" "backups" {
  bucket = aws_s3_bucket.backups.id
  # A half-uploaded backup (the job died) is never a backup: its parts go after a day.
  rule {
    id     = "abort-incomplete-uploads"
    status = "Enabled"
    filter {}
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }
  rule {
    id     = "logical-backups"
    status = "Enabled"
    filter {
      prefix = "logical/"
    }
    transition {
      days          = 30
      storage_class = "GLACIER_IR"
    }
    expiration {
      days = var.logical_backup_expiry_days
    }
    noncurrent_version_expiration {
      noncurrent_days = 30
    }
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "replica" {
  provider = aws.dr
  bucket   = aws_s3_bucket.replica.id
  # A half-uploaded backup (the job died) is never a backup: its parts go after a day.
  rule {
    id     = "abort-incomplete-uploads"
    status = "Enabled"
    filter {}
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }
  rule {
    id     = "logical-backups"
    status = "Enabled"
    filter {
      prefix = "logical/"
    }
    transition {
      days          = 30
      storage_class = "GLACIER_IR"
    }
    expiration {
      days = var.logical_backup_expiry_days
    }
    noncurrent_version_expiration {
      noncurrent_days = 30
    }
  }
}

# --- replication: every object, within 15 minutes (S3 Replication Time Control) ---------------

data "aws_iam_policy_document" "replication_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["s3.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "replication" {
  name               = "${var.name}-backup-replication"
  assume_role_policy = data.aws_iam_policy_document.replication_assume.json
  tags               = var.tags
}

data "aws_iam_policy_document" "replication" {
  statement {
    sid       = "ReadSource"
    actions   = ["s3:GetReplicationConfiguration", "s3:ListBucket"]
    resources = [aws_s3_bucket.backups.arn]
  }
  statement {
    sid = "ReadSourceObjects"
    actions = [
      "s3:GetObjectVersionForReplication",
      "s3:GetObjectVersionAcl",
      "s3:GetObjectVersionTagging",
      "s3:GetObjectRetention",
      "s3:GetObjectLegalHold",
    ]
    resources = ["${aws_s3_bucket.backups.arn}/*"]
  }
  statement {
    sid       = "WriteReplica"
    actions   = ["s3:ReplicateObject", "s3:ReplicateTags", "s3:ObjectOwnerOverrideToBucketOwner"]
    resources = ["${aws_s3_bucket.replica.arn}/*"]
  }
  statement {
    sid       = "DecryptSource"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.backups.arn]
  }
  statement {
    sid       = "EncryptReplica"
    actions   = ["kms:Encrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.dr.arn]
  }
}

resource "aws_iam_role_policy" "replication" {
  name   = "replicate-backups"
  role   = aws_iam_role.replication.id
  policy = data.aws_iam_policy_document.replication.json
}

resource "aws_s3_bucket_replication_configuration" "backups" {
  # Versioning must be on at both ends before replication can be configured.
  depends_on = [aws_s3_bucket_versioning.backups, aws_s3_bucket_versioning.replica]

  role   = aws_iam_role.replication.arn
  bucket = aws_s3_bucket.backups.id

  rule {
    id     = "everything-to-the-dr-region"
    status = "Enabled"
    filter {}
    # A deletion in the primary (lifecycle or a person) is not copied: the replica keeps
    # its own lifecycle, so a mistake in one region cannot empty the other.
    delete_marker_replication {
      status = "Disabled"
    }
    source_selection_criteria {
      sse_kms_encrypted_objects {
        status = "Enabled"
      }
    }
    destination {
      bucket        = aws_s3_bucket.replica.arn
      storage_class = "STANDARD"
      encryption_configuration {
        replica_kms_key_id = aws_kms_key.dr.arn
      }
      replication_time {
        status = "Enabled"
        time {
          minutes = 15
        }
      }
      metrics {
        status = "Enabled"
        event_threshold {
          minutes = 15
        }
      }
    }
  }
}
