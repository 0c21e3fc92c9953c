output "autoscaling_group_name" {
  description = "Name of the Auto Scaling group (the agent scales it to zero when its experiments have ended)."
  value       = try(aws_autoscaling_group.this.name, null)
}

output "autoscaling_group_arn" {
  description = "ARN of the Auto Scaling group."
  value       = try(aws_autoscaling_group.this.arn, null)
}

output "launch_template_id" {
  description = "ID of the group's launch template."
  value       = try(aws_launch_template.this.id, null)
}

output "launch_template_latest_version" {
  description = "Latest version of the group's launch template (the one the group uses)."
  value       = try(aws_launch_template.this.latest_version, null)
}

output "placement_group_name" {
  description = "Name of the machine's cluster placement group; null when it has none (one node, `create_placement_group` false, or instance types that cannot be placed in one)."
  value       = try(aws_placement_group.this[0].name, null)
}
