terraform {
  required_version = ">= 1.5"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0"
    }
  }
}

provider "aws" {
  region = "eu-west-1"
}

module "monotone" {
  source = "../.."

  table_name = "Counters"
  role_names = []

  tags = {
    Application = "monotone"
  }
}

output "table_name" {
  value = module.monotone.table_name
}

output "policy_arn" {
  value = module.monotone.policy_arn
}
