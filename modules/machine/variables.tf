variable "name" {
  description = "Name of the Auto Scaling group and of its launch template: 1 to 128 letters, digits, hyphens, underscores or dots (gridctl uses `gridctl-<environment>-<machine>`, so that two environments in one account and region never share a group). Must be unique in the account and region."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9._-]{1,128}$", var.name))
    error_message = "The name must be 1 to 128 characters of letters, digits, hyphens, underscores and dots."
  }
}

variable "environment" {
  description = "Name of the gridctl environment (the environment module's `name`): 1 to 24 lowercase letters, digits or hyphens. Tagged `gridctl:environment` on the group and its instances, which is what lets the node role scale and terminate them."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9-]{1,24}$", var.environment))
    error_message = "The environment must be 1 to 24 characters of lowercase letters, digits and hyphens."
  }
}

variable "run" {
  description = "Name of the gridctl run (tag `gridctl:run`): 1 to 128 lowercase letters, digits or hyphens."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9-]{1,128}$", var.run))
    error_message = "The run must be 1 to 128 characters of lowercase letters, digits and hyphens."
  }
}

variable "machine" {
  description = "Name of the machine: `<run>-exp<N>` when it runs one experiment, `<run>-machine<N>` when several experiments share it. Tagged `gridctl:experiment` (the tag nodes read) and `Name` on the group and its instances. The agent reads `runs/<run>/machines/<machine>.json` in the bucket. 1 to 128 lowercase letters, digits or hyphens."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9-]{1,128}$", var.machine))
    error_message = "The machine must be 1 to 128 characters of lowercase letters, digits and hyphens."
  }
}

variable "bucket" {
  description = "Name of the environment's S3 bucket (the environment module's `bucket_name` output): the node downloads the agent wheel from it and the agent finds its work there (tag `gridctl:bucket`)."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.bucket))
    error_message = "The bucket must be an S3 bucket name: 3 to 63 lowercase letters, digits, dots and hyphens, starting and ending with a letter or digit."
  }
}

variable "region" {
  description = "AWS region of the environment and its bucket, such as `us-east-1` (written into the user data for the AWS CLI)."
  type        = string

  validation {
    condition     = can(regex("^[a-z]{2}(-[a-z]+)+-[0-9]$", var.region))
    error_message = "The region must be an AWS region name such as \"us-east-1\"."
  }
}

variable "ami_id" {
  description = "AMI the nodes boot: an AMI ID (`ami-...`), or `resolve:ssm:<parameter>` naming a public or own SSM parameter that holds one, which EC2 resolves at every launch (so nodes get the AMI current then, such as the newest build of an AWS Deep Learning AMI). It needs bash, python3 (3.10 or newer) with venv and the AWS CLI, as the AWS Deep Learning AMIs on Ubuntu have; set `root_device_name` to match it."
  type        = string

  validation {
    condition     = can(regex("^(ami-[0-9a-f]{8,17}|resolve:ssm:/?[A-Za-z0-9_.:/-]+)$", var.ami_id))
    error_message = "The ami_id must be an AMI ID such as \"ami-0123456789abcdef0\" or an SSM parameter reference such as \"resolve:ssm:/aws/service/deeplearning/ami/x86_64/oss-nvidia-driver-gpu-pytorch-2.12-ubuntu-24.04/latest/ami-id\"."
  }
}

variable "instance_types" {
  description = "EC2 instance types, such as [\"g4dn.xlarge\"]: at least one. On demand (`use_spot` false) only the first is used; with spot every one is an override the group may launch, so more types (and zones) mean fewer unfilled spot requests."
  type        = list(string)

  validation {
    condition     = length(var.instance_types) > 0
    error_message = "The instance_types list must hold at least one instance type."
  }

  validation {
    condition     = alltrue([for t in var.instance_types : can(regex("^[a-z0-9-]+[.][a-z0-9-]+$", t))])
    error_message = "Every instance type must look like \"g4dn.xlarge\" (family.size)."
  }
}

variable "use_spot" {
  description = "Whether the group runs only spot instances (a mixed instances policy with 0% on demand and the price-capacity-optimized allocation strategy) instead of on-demand instances of the first type."
  type        = bool
  default     = false
  nullable    = false
}

variable "capacity_rebalance" {
  description = "Whether a spot group rebalances capacity: on a rebalance recommendation AWS launches a replacement and then terminates the old instance, which the agent handles as an interruption. Set it only for runs whose experiments resume on the replacement (`gridctl run --auto_resume`); otherwise the experiment would end `interrupted` for an interruption that might never have come. Ignored when `use_spot` is false."
  type        = bool
  default     = false
  nullable    = false
}

variable "associate_public_ip_address" {
  description = "Whether the nodes' network interface gets a public IPv4 address: true where the subnets have no other way out (gridctl's own VPC: public subnets and no NAT gateway), null to follow each subnet's own setting (a VPC of your own, with or without a NAT gateway), false for none."
  type        = bool
  default     = true
}

variable "node_count" {
  description = "Number of instances (nodes) of the machine: a whole number, at least 1. It is the group's maximum and initial desired capacity."
  type        = number
  default     = 1
  nullable    = false

  validation {
    condition     = var.node_count >= 1 && floor(var.node_count) == var.node_count
    error_message = "The node_count must be a whole number of at least 1."
  }
}

variable "create_placement_group" {
  description = "Whether a machine of more than one node (`node_count` > 1, a gang) gets its own cluster placement group, named `name`, for low latency and high bandwidth between its nodes. The group then launches in the first of `subnet_ids` only (a cluster placement group lies in one zone). Ignored for one node and for instance types EC2 cannot place in one (burstable T and Mac types). Set it false where placement groups are not available (emulators such as moto) or to keep a gang free to use every zone's capacity."
  type        = bool
  default     = true
  nullable    = false
}

variable "subnet_ids" {
  description = "IDs of the subnets (`subnet-...`) the group may launch in (the environment module's `subnet_ids` output): at least one; several zones give spot requests more capacity pools."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) > 0 && alltrue([for id in var.subnet_ids : can(regex("^subnet-[0-9a-f]+$", id))])
    error_message = "The subnet_ids list must hold at least one subnet ID such as \"subnet-0123456789abcdef0\"."
  }
}

variable "security_group_id" {
  description = "ID of the nodes' security group (`sg-...`, the environment module's `security_group_id` output)."
  type        = string

  validation {
    condition     = can(regex("^sg-[0-9a-f]+$", var.security_group_id))
    error_message = "The security_group_id must be a security group ID such as \"sg-0123456789abcdef0\"."
  }
}

variable "instance_profile_name" {
  description = "Name of the nodes' IAM instance profile (the environment module's `instance_profile_name` output): 1 to 128 characters of letters, digits and +=,.@_-."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9+=,.@_-]{1,128}$", var.instance_profile_name))
    error_message = "The instance_profile_name must be 1 to 128 characters of letters, digits and +=,.@_-."
  }
}

variable "root_volume_size" {
  description = "Size of each node's root volume in GiB (gp3, encrypted): a whole number from 8 to 16384. It holds the exec dir, the Python environment and anything the script writes outside scratch."
  type        = number
  default     = 100
  nullable    = false

  validation {
    condition     = var.root_volume_size >= 8 && var.root_volume_size <= 16384 && floor(var.root_volume_size) == var.root_volume_size
    error_message = "The root_volume_size must be a whole number of GiB from 8 to 16384."
  }
}

variable "scratch_size" {
  description = "Size in GiB of an extra encrypted gp3 volume for scratch space (`gridctl run --scratch_size`), attached as `scratch_device_name` and deleted with the instance; the agent finds it by its size, formats and mounts it. 0 for none."
  type        = number
  default     = 0
  nullable    = false

  validation {
    condition     = var.scratch_size >= 0 && var.scratch_size <= 16384 && floor(var.scratch_size) == var.scratch_size
    error_message = "The scratch_size must be a whole number of GiB from 0 (none) to 16384."
  }
}

variable "scratch_device_name" {
  description = "Device name the scratch volume is attached as (Nitro instances show it as an NVMe device whatever the name)."
  type        = string
  default     = "/dev/sdf"
  nullable    = false

  validation {
    condition     = can(regex("^/dev/[a-z0-9]+$", var.scratch_device_name))
    error_message = "The scratch_device_name must be a device path such as \"/dev/sdf\"."
  }
}

variable "root_device_name" {
  description = "Device name of the AMI's root volume, which the root volume settings apply to: \"/dev/sda1\" for Ubuntu-based AMIs (such as the Deep Learning Base OSS Nvidia Driver GPU AMI on Ubuntu 22.04), \"/dev/xvda\" for Amazon Linux (such as the Deep Learning Base Proprietary Nvidia Driver AMI on Amazon Linux 2). A name the AMI does not have adds an empty volume instead of sizing the root volume."
  type        = string
  default     = "/dev/sda1"
  nullable    = false

  validation {
    condition     = can(regex("^/dev/[a-z0-9]+$", var.root_device_name))
    error_message = "The root_device_name must be a device path such as \"/dev/sda1\" or \"/dev/xvda\"."
  }
}

variable "agent_wheel_key" {
  description = "S3 key, in `bucket`, of the gridctl wheel the node installs, such as \"wheels/gridctl-0.1.0-py3-none-any.whl\". The file name must be the wheel's real name (pip reads the version from it)."
  type        = string

  validation {
    condition     = can(regex("^([A-Za-z0-9._+-]+/)*[A-Za-z0-9._+-]+-[A-Za-z0-9._+-]+[.]whl$", var.agent_wheel_key))
    error_message = "The agent_wheel_key must be an S3 key of letters, digits and ._+-/ ending in a wheel file name such as \"wheels/gridctl-0.1.0-py3-none-any.whl\"."
  }
}

variable "max_lifetime_hours" {
  description = "Hours after boot at which a node records its unfinished experiments failed (the reason names this limit) and scales its group to zero, whatever the agent is doing: a guard against a node that hangs. A whole number from 1 to 8760 (a year)."
  type        = number
  default     = 168
  nullable    = false

  validation {
    condition     = var.max_lifetime_hours >= 1 && var.max_lifetime_hours <= 8760 && floor(var.max_lifetime_hours) == var.max_lifetime_hours
    error_message = "The max_lifetime_hours must be a whole number of hours from 1 to 8760."
  }
}

variable "tags" {
  description = "Tags added to the launch template, the group and (propagated at launch) its instances and volumes. The gridctl:* tags and Name are set by the module and cannot be overridden."
  type        = map(string)
  default     = {}
  nullable    = false
}
