# terraform plan -var-file=environments/prod/terraform.tfvars
environment        = "prod"
region             = "eu-central-1"
dr_region          = "eu-west-1"
azs                = ["eu-central-1a", "eu-central-1b", "eu-central-1c"]
vpc_cidr           = "10.20.0.0/16"
single_nat_gateway = false

kubernetes_version  = "1.28"
node_instance_types = ["t3.medium"]
node_min_size       = 2
node_max_size       = 43 # deploy/capacity.json: every HPA at its maximum

# Replace with your CI egress / VPN ranges (documentation range as a placeholder).
cluster_endpoint_public_access_cidrs = ["198.51.100.0/24"]

db_engine_version        = "15.4"
db_instance_class        = "db.m6i.large" # deploy/capacity.json (python -m bench capacity ... --write-deploy)
db_allocated_storage     = 100
db_max_allocated_storage = 500
db_multi_az              = true
db_backup_retention_days = 7
db_deletion_protection   = true

# deploy/capacity.json (events.broker): the broker with every HPA at its maximum
mq_instance_type = "mq.m5.large" # deploy/capacity.json (events.broker)

# deploy/capacity.json (python -m bench capacity ... --write-deploy)
redis_node_type = "cache.m6g.large"

github_repository = "shop/shop"
# dev and prod may share an AWS account; the provider exists once per account.
create_github_oidc_provider = false
