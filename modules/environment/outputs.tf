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
  description = "ID of the nodes' security group (no ingress rule, all egress)."
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
  description = "ID of the AMI every node of this environment boots (the `ami_id` input, passed through)."
  value       = try(var.ami_id, null)
}

output "region" {
  description = "Region the environment lives in (from the provider configuration)."
  value       = try(data.aws_region.current.name, null)
}
