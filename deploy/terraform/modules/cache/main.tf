# ElastiCache for Redis: the catalogue cache's shared Redis in AWS (docs/performance.md, "The
# catalogue cache"). A primary and a replica in two zones with automatic failover, in the
# private database subnets, reachable on 6379 from the private app subnets only, encrypted at
# rest (customer-managed KMS key) and in transit (TLS, rediss://), with an AUTH token kept in
# Secrets Manager. The node type is deploy/capacity.json's (python -m bench capacity ...
# --write-deploy); tests/deploy/test_capacity.py fails when it differs.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

resource "aws_kms_key" "cache" {
  description             = "${var.name} ElastiCache storage and AUTH token secret"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.cache_key.json
  tags                    = var.tags
}

resource "aws_kms_alias" "cache" {
  name          = "alias/${var.name}-redis"
  target_key_id = aws_kms_key.cache.key_id
}

data "aws_iam_policy_document" "cache_key" {
  #checkov:skip=CKV_AWS_109:Key policy: the account-root statement is the AWS default that lets IAM policies govern the key; "*" in a key policy means this key only
  #checkov:skip=CKV_AWS_111:Key policy: the account-root statement is the AWS default that lets IAM policies govern the key; "*" in a key policy means this key only
  #checkov:skip=CKV_AWS_356:Key policy: "*" as the resource of a key policy means this key only
  statement {
    sid       = "AccountAdministration"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root"]
    }
  }
}

resource "aws_elasticache_subnet_group" "this" {
  name        = "${var.name}-redis"
  description = "Private database subnets of ${var.name}"
  subnet_ids  = var.subnet_ids
  tags        = var.tags
}

resource "aws_security_group" "cache" {
  name        = "${var.name}-redis"
  description = "Redis, reachable from the private app subnets only"
  vpc_id      = var.vpc_id

  ingress {
    description = "Redis (TLS) from the private app subnets (EKS nodes and pods)"
    from_port   = 6379
    to_port     = 6379
    protocol    = "tcp"
    cidr_blocks = var.allowed_cidr_blocks
  }

  # No egress rule: Redis initiates no connections.

  tags = merge(var.tags, { Name = "${var.name}-redis" })
}

# The AUTH token: 64 characters of Redis AUTH's allowed alphabet (no special characters).
resource "random_password" "auth" {
  length  = 64
  special = false
}

resource "aws_secretsmanager_secret" "auth" {
  #checkov:skip=CKV2_AWS_57:The AUTH token rotates by replacing random_password.auth (auth_token_update_strategy ROTATE keeps the old token valid during the change), not by a rotation Lambda
  name        = "${var.name}/redis-auth-token"
  description = "AUTH token of the ${var.name} catalogue cache (rediss://:<token>@<primary endpoint>:6379/0)"
  kms_key_id  = aws_kms_key.cache.arn
  tags        = var.tags
}

resource "aws_secretsmanager_secret_version" "auth" {
  secret_id     = aws_secretsmanager_secret.auth.id
  secret_string = random_password.auth.result
}

resource "aws_elasticache_replication_group" "this" {
  replication_group_id = "${var.name}-redis"
  description          = "Catalogue cache of ${var.name}"
  engine               = "redis"
  engine_version       = var.engine_version
  node_type            = var.node_type
  port                 = 6379
  parameter_group_name = "default.redis7"

  num_cache_clusters         = 2
  automatic_failover_enabled = true
  multi_az_enabled           = true
  subnet_group_name          = aws_elasticache_subnet_group.this.name
  security_group_ids         = [aws_security_group.cache.id]

  at_rest_encryption_enabled = true
  kms_key_id                 = aws_kms_key.cache.arn
  transit_encryption_enabled = true
  auth_token                 = random_password.auth.result
  auth_token_update_strategy = "ROTATE"

  # A cache refills from PostgreSQL; one daily snapshot is kept only to speed up a rebuild.
  snapshot_retention_limit   = 1
  snapshot_window            = "01:00-02:00"
  maintenance_window         = "sun:04:30-sun:05:30"
  auto_minor_version_upgrade = true
  apply_immediately          = false

  tags = var.tags
}
