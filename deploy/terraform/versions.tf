terraform {
  required_version = ">= 1.5.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.40"
    }
    tls = {
      source  = "hashicorp/tls"
      version = "~> 4.0"
    }
    random = {
      source  = "hashicorp/random"
      version = "~> 3.6"
    }
  }

  # Partial configuration: bucket, key, region and lock table come from
  # environments/<env>/backend.hcl (terraform init -backend-config=...), so one root module
  # serves every environment with its own state. The bucket and table are created once by
  # the bootstrap/ root module.
  backend "s3" {}
}
