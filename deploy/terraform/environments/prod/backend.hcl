# terraform init -backend-config=environments/prod/backend.hcl
bucket         = "shop-terraform-state-ACCOUNT_ID"
key            = "shop/prod/terraform.tfstate"
region         = "eu-central-1"
dynamodb_table = "shop-terraform-locks"
encrypt        = true
