# terraform init -backend-config=environments/dev/backend.hcl
bucket         = "shop-terraform-state-ACCOUNT_ID"
key            = "shop/dev/terraform.tfstate"
region         = "eu-central-1"
dynamodb_table = "shop-terraform-locks"
encrypt        = true
