# terraform plan -var-file=environments/dev/terraform.tfvars
environment        = "dev"
region             = "eu-central-1"
dr_region          = "eu-west-1"
azs                = ["eu-central-1a", "eu-central-1b", "eu-central-1c"]
vpc_cidr           = "10.10.0.0/16"
single_nat_gateway = true

kubernetes_version  = "1.28"
node_instance_types = ["t3.medium"]
node_min_size       = 2
node_max_size       = 10

# Replace with your CI egress / VPN ranges (documentation range as a placeholder).
cluster_endpoint_public_access_cidrs = ["203.0.113.0/24"]

db_engine_version        = "15.4"
db_instance_class        = "db.t3.medium"
db_allocated_storage     = 100
db_max_allocated_storage = 200
db_multi_az              = true
db_backup_retention_days = 7
db_deletion_protection   = false

# dev is not sized by the capacity model (deploy/capacity.json is production's): the
# smallest node type.
redis_node_type = "cache.t4g.small"

github_repository           = "shop/shop"
create_github_oidc_provider = true
# One broker instead of a cluster (Amazon MQ's smallest RabbitMQ size).
mq_instance_type = "mq.t3.micro"
mq_multi_az      = false
