locals {
  # The gridctl:* tags are how the agent, the CLI and the node role's conditions find a
  # group and its instances: callers' tags cannot override them. The machine's name keeps
  # the tag `gridctl:experiment` that nodes read (SPEC section 6).
  tags = merge(var.tags, {
    "gridctl:environment" = var.environment
    "gridctl:run"         = var.run
    "gridctl:experiment"  = var.machine
    "gridctl:bucket"      = var.bucket
  })
  instance_tags = merge(local.tags, { Name = var.machine })

  # No secrets go in here (user data is readable by anyone who can describe the instance).
  user_data = templatefile("${path.module}/user-data.sh.tftpl", {
    bucket             = var.bucket
    region             = var.region
    agent_wheel_key    = var.agent_wheel_key
    run                = var.run
    machine            = var.machine
    max_lifetime_hours = var.max_lifetime_hours
  })

  # A gang's nodes talk to each other all the time (all-reduce): a cluster placement group
  # puts them on one low-latency, high-bandwidth network segment. EC2 refuses burstable (T)
  # and Mac instance types in one, and it lies in a single zone, which an Auto Scaling group
  # with a cluster placement group must be limited to (the first subnet's).
  placement_group = var.create_placement_group && var.node_count > 1 && alltrue([
    for t in var.instance_types : !can(regex("^(t[0-9]|mac[0-9-])", t))
  ])
  subnet_ids = local.placement_group ? slice(var.subnet_ids, 0, 1) : var.subnet_ids
}

resource "aws_placement_group" "this" {
  count = local.placement_group ? 1 : 0

  name     = var.name
  strategy = "cluster"

  tags = local.tags
}

resource "aws_launch_template" "this" {
  #checkov:skip=CKV_AWS_88:Nodes need outbound internet (pip install, S3, AWS APIs) and the environment deliberately has no NAT gateway, which would cost money while idle; the security group admits no inbound connection except from members of the same group, so the public IP accepts none from outside.
  #checkov:skip=CKV_AWS_341:A hop limit of 2 lets containers the training script starts on the node (Docker bridge networking adds a hop) use IMDSv2; tokens are still required.

  name        = var.name
  description = "gridctl ${var.machine} of run ${var.run}"

  image_id = var.ami_id
  # With spot the mixed instances policy's overrides choose the type.
  instance_type = var.use_spot ? null : var.instance_types[0]
  user_data     = base64encode(local.user_data)
  # A node that shuts itself down (a last resort) ends, and so stops costing.
  instance_initiated_shutdown_behavior = "terminate"

  iam_instance_profile {
    name = var.instance_profile_name
  }

  network_interfaces {
    device_index                = 0
    associate_public_ip_address = var.associate_public_ip_address
    delete_on_termination       = true
    security_groups             = [var.security_group_id]
  }

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 2
    instance_metadata_tags      = "enabled"
  }

  block_device_mappings {
    device_name = var.root_device_name

    ebs {
      volume_size           = var.root_volume_size
      volume_type           = "gp3"
      encrypted             = true
      delete_on_termination = true
    }
  }

  dynamic "block_device_mappings" {
    for_each = var.scratch_size > 0 ? [var.scratch_size] : []

    content {
      device_name = var.scratch_device_name

      ebs {
        volume_size           = block_device_mappings.value
        volume_type           = "gp3"
        encrypted             = true
        delete_on_termination = true
      }
    }
  }

  monitoring {
    enabled = true
  }

  tag_specifications {
    resource_type = "instance"
    tags          = local.instance_tags
  }

  tag_specifications {
    resource_type = "volume"
    tags          = local.instance_tags
  }

  tags = local.tags
}

resource "aws_autoscaling_group" "this" {
  name                = var.name
  min_size            = 0
  max_size            = var.node_count
  desired_capacity    = var.node_count
  vpc_zone_identifier = local.subnet_ids
  placement_group     = try(aws_placement_group.this[0].name, null)

  # A gang spread over several zones must not lose a running node to AWS moving capacity
  # between zones: it would interrupt the whole gang. (null for one node: as before gangs.)
  suspended_processes = var.node_count > 1 ? ["AZRebalance"] : null

  # Spot with auto-resume: AWS starts a replacement as soon as an instance is at elevated risk
  # of interruption, then ends the old one, which the agent handles as an interruption. A run
  # that cannot resume would only lose its experiment to that, so it keeps its instance until
  # a real reclaim.
  capacity_rebalance = var.use_spot && var.capacity_rebalance
  # gridctl does not wait for instances to be healthy: the agent reports its own progress.
  wait_for_capacity_timeout = "0"

  dynamic "launch_template" {
    for_each = var.use_spot ? [] : [aws_launch_template.this]

    content {
      id      = launch_template.value.id
      version = launch_template.value.latest_version
    }
  }

  dynamic "mixed_instances_policy" {
    for_each = var.use_spot ? [aws_launch_template.this] : []

    content {
      instances_distribution {
        on_demand_base_capacity                  = 0
        on_demand_percentage_above_base_capacity = 0
        spot_allocation_strategy                 = "price-capacity-optimized"
      }

      launch_template {
        launch_template_specification {
          launch_template_id = mixed_instances_policy.value.id
          version            = mixed_instances_policy.value.latest_version
        }

        dynamic "override" {
          for_each = var.instance_types

          content {
            instance_type = override.value
          }
        }
      }
    }
  }

  dynamic "tag" {
    for_each = local.instance_tags

    content {
      key                 = tag.key
      value               = tag.value
      propagate_at_launch = true
    }
  }

  lifecycle {
    # The node agent scales its own group to zero when the experiment ends; a later apply of
    # the run must not start it again.
    ignore_changes = [desired_capacity, min_size]
  }
}
