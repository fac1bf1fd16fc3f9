# Amazon MQ for RabbitMQ: the events broker (docs/events.md) as a managed service. Private
# (reachable from the app subnets only, AMQPS on 5671), a three-node cluster across zones in
# production, general logs to CloudWatch, encrypted with a key of our own. The services get
# amqps://<user>:<password>@<endpoint>:5671/ as SHOP_AMQP_URL from Vault (secret/shop/internal).

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

resource "aws_kms_key" "mq" {
  description             = "${var.name} Amazon MQ encryption"
  deletion_window_in_days = 30
  enable_key_rotation     = true
  policy                  = data.aws_iam_policy_document.kms.json
  tags                    = var.tags
}

resource "aws_kms_alias" "mq" {
  name          = "alias/${var.name}-mq"
  target_key_id = aws_kms_key.mq.key_id
}

data "aws_iam_policy_document" "kms" {
  #checkov:skip=CKV_AWS_109:Key policy: the account-root statement is the AWS default that lets IAM policies govern the key; "*" in a key policy means this key only
  #checkov:skip=CKV_AWS_111:Key policy: the account-root statement is the AWS default that lets IAM policies govern the key; "*" in a key policy means this key only
  #checkov:skip=CKV_AWS_356:Key policy: "*" as the resource of a key policy means this key only
  statement {
    sid       = "AccountAdministers"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root"]
    }
  }
}

resource "aws_security_group" "mq" {
  name        = "${var.name}-mq"
  description = "Amazon MQ (RabbitMQ), reachable from the private app subnets only"
  vpc_id      = var.vpc_id

  ingress {
    description = "AMQPS from the private app subnets (EKS nodes and pods)"
    from_port   = 5671
    to_port     = 5671
    protocol    = "tcp"
    cidr_blocks = var.allowed_cidr_blocks
  }

  # No egress rule: the broker initiates no connections.

  tags = merge(var.tags, { Name = "${var.name}-mq" })
}

resource "random_password" "mq" {
  length  = 32
  special = false # Amazon MQ refuses some punctuation in RabbitMQ passwords
}

resource "aws_mq_broker" "this" {
  broker_name                = "${var.name}-events"
  engine_type                = "RabbitMQ"
  engine_version             = var.engine_version
  host_instance_type         = var.instance_type
  deployment_mode            = var.multi_az ? "CLUSTER_MULTI_AZ" : "SINGLE_INSTANCE"
  subnet_ids                 = var.multi_az ? var.subnet_ids : [var.subnet_ids[0]]
  security_groups            = [aws_security_group.mq.id]
  publicly_accessible        = false
  auto_minor_version_upgrade = true
  apply_immediately          = false

  encryption_options {
    use_aws_owned_key = false
    kms_key_id        = aws_kms_key.mq.arn
  }

  # checkov:skip=CKV_AWS_197:Amazon MQ for RabbitMQ has no audit log (ActiveMQ only); general logs are on
  logs {
    general = true
  }

  maintenance_window_start_time {
    day_of_week = "SUNDAY"
    time_of_day = "04:30"
    time_zone   = "UTC"
  }

  user {
    username = "shop"
    password = random_password.mq.result
  }

  tags = var.tags
}
