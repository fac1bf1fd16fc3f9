# The shop platform on AWS: network, EKS, RDS PostgreSQL and ElastiCache Redis for one
# environment, and the
# backup bucket with its copies in a second region (modules/backups).
#   terraform init -backend-config=environments/<env>/backend.hcl
#   terraform plan -var-file=environments/<env>/terraform.tfvars
# Variable defaults are the production values; dev overrides a few in its tfvars.

locals {
  name         = "shop-${var.environment}"
  cluster_name = "shop-${var.environment}"
  tags = {
    Project     = "shop"
    Environment = var.environment
  }
}

module "network" {
  source = "./modules/network"

  name               = local.name
  cluster_name       = local.cluster_name
  vpc_cidr           = var.vpc_cidr
  azs                = var.azs
  single_nat_gateway = var.single_nat_gateway
  tags               = local.tags
}

module "eks" {
  source = "./modules/eks"

  cluster_name                 = local.cluster_name
  kubernetes_version           = var.kubernetes_version
  vpc_id                       = module.network.vpc_id
  subnet_ids                   = module.network.app_subnet_ids
  endpoint_public_access_cidrs = var.cluster_endpoint_public_access_cidrs
  node_instance_types          = var.node_instance_types
  node_min_size                = var.node_min_size
  node_max_size                = var.node_max_size
  node_desired_size            = var.node_min_size
  tags                         = local.tags
}

module "database" {
  source = "./modules/database"

  name                  = local.name
  vpc_id                = module.network.vpc_id
  database_subnet_ids   = module.network.database_subnet_ids
  allowed_cidr_blocks   = module.network.app_subnet_cidrs
  engine_version        = var.db_engine_version
  instance_class        = var.db_instance_class
  allocated_storage     = var.db_allocated_storage
  max_allocated_storage = var.db_max_allocated_storage
  multi_az              = var.db_multi_az
  backup_retention_days = var.db_backup_retention_days
  deletion_protection   = var.db_deletion_protection
  tags                  = local.tags
}

# The catalogue cache's Redis (ElastiCache); its node type is deploy/capacity.json's.
module "cache" {
  source = "./modules/cache"

  name                = local.name
  vpc_id              = module.network.vpc_id
  subnet_ids          = module.network.database_subnet_ids
  allowed_cidr_blocks = module.network.app_subnet_cidrs
  node_type           = var.redis_node_type
  tags                = local.tags
}

# The events broker (docs/events.md): Amazon MQ for RabbitMQ in the database subnets.
module "mq" {
  source = "./modules/mq"

  name                = local.name
  vpc_id              = module.network.vpc_id
  subnet_ids          = module.network.database_subnet_ids
  allowed_cidr_blocks = module.network.app_subnet_cidrs
  instance_type       = var.mq_instance_type
  multi_az            = var.mq_multi_az
  tags                = local.tags
}

module "backups" {
  source = "./modules/backups"
  providers = {
    aws    = aws
    aws.dr = aws.dr
  }

  name                     = local.name
  source_db_instance_arn   = module.database.primary_arn
  db_backup_retention_days = var.db_backup_retention_days
  tags                     = local.tags
}
