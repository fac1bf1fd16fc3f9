terraform {
  required_providers {
    aws = {
      source = "hashicorp/aws"
      # aws: the primary region; aws.dr: the disaster-recovery region.
      configuration_aliases = [aws.dr]
    }
  }
}
