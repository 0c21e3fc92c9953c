output "bucket_name" {
  description = "Name of the environment's S3 bucket (bundles, artifacts, logs, datastores, per-run Terraform state)."
  value       = try(aws_s3_bucket.this.id, null)
}

output "bucket_arn" {
  description = "ARN of the environment's S3 bucket."
  value       = try(aws_s3_bucket.this.arn, null)
}

output "vpc_id" {
  description = "ID of the VPC the nodes run in: the created one, or the given `vpc_id`."
  value       = try(local.vpc_id, null)
}

output "subnet_ids" {
  description = "IDs of the subnets the nodes' Auto Scaling groups span: one public subnet per zone when the module created the VPC, otherwise the given `subnet_ids`."
  value       = try(local.subnet_ids, [])
}

output "security_group_id" {
  description = "ID of the nodes' security group (inbound from its own members only, all egress)."
  value       = try(aws_security_group.this.id, null)
}

output "instance_profile_name" {
  description = "Name of the nodes' IAM instance profile (for launch templates)."
  value       = try(aws_iam_instance_profile.this.name, null)
}

output "instance_profile_arn" {
  description = "ARN of the nodes' IAM instance profile."
  value       = try(aws_iam_instance_profile.this.arn, null)
}

output "node_role_arn" {
  description = "ARN of the nodes' IAM role."
  value       = try(aws_iam_role.this.arn, null)
}

output "ami_id" {
  description = "AMI every node of this environment boots (the `ami_id` input, passed through); null when each run picks the Deep Learning Base AMI for its instance type."
  value       = try(var.ami_id, null)
}

output "node_public_ip" {
  description = "Whether the nodes' launch templates must ask for a public IPv4 address: true in the VPC the module created (public subnets, no NAT gateway); false in a given VPC, where each subnet's own setting applies (the machine module's `associate_public_ip_address` = null)."
  value       = try(local.create_vpc, false)
}

output "s3_vpc_endpoint_id" {
  description = "ID of the S3 gateway endpoint of the VPC the module created (S3 traffic stays off the internet gateway); null in a given VPC, where the module adds none."
  value       = try(aws_vpc_endpoint.s3[0].id, null)
}

output "region" {
  description = "Region the environment lives in (from the provider configuration)."
  value       = try(data.aws_region.current.name, null)
}
