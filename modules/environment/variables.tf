variable "name" {
  description = "Name of the gridctl environment: 1 to 24 lowercase letters, digits or hyphens. Used in resource names and as the value of the `gridctl:environment` tag that scopes the node role's scaling and termination rights."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9-]{1,24}$", var.name))
    error_message = "The name must be 1 to 24 characters of lowercase letters, digits and hyphens."
  }
}

variable "bucket_name" {
  description = "Name of the S3 bucket that holds bundles, artifacts, logs, datastores and per-run Terraform state (computed by gridctl). Must be a valid S3 bucket name: 3 to 63 characters of lowercase letters, digits, dots and hyphens, starting and ending with a letter or digit."
  type        = string

  validation {
    condition = (
      can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.bucket_name)) &&
      !strcontains(var.bucket_name, "..") &&
      !can(regex("^[0-9]+[.][0-9]+[.][0-9]+[.][0-9]+$", var.bucket_name)) &&
      !startswith(var.bucket_name, "xn--") &&
      !startswith(var.bucket_name, "sthree-") &&
      !endswith(var.bucket_name, "-s3alias") &&
      !endswith(var.bucket_name, "--ol-s3")
    )
    error_message = "The bucket_name must be a valid S3 bucket name: 3 to 63 lowercase letters, digits, dots and hyphens, starting and ending with a letter or digit, no \"..\", not an IP address, no reserved prefix (xn--, sthree-) or suffix (-s3alias, --ol-s3)."
  }
}

variable "force_destroy" {
  description = "Whether `terraform destroy` deletes the bucket even when it still holds objects. gridctl sets true so that `gridctl down` leaves nothing behind; false protects the data from an accidental destroy."
  type        = bool
  default     = false
  nullable    = false
}

variable "deny_insecure_transport" {
  description = "Whether the bucket gets a policy that denies every request not made over TLS (`aws:SecureTransport = false`). Keep true; set false only against a plain-HTTP test endpoint such as moto on loopback, which enforces the deny on object requests."
  type        = bool
  default     = true
  nullable    = false
}

variable "vpc_id" {
  description = "ID of an existing VPC (`vpc-...`) to place the nodes in. null (the default) creates a VPC with one public subnet per availability zone. When set, `subnet_ids` is required."
  type        = string
  default     = null

  validation {
    condition     = var.vpc_id == null || can(regex("^vpc-[0-9a-f]+$", var.vpc_id))
    error_message = "The vpc_id must be null or a VPC ID such as \"vpc-0123456789abcdef0\"."
  }
}

variable "subnet_ids" {
  description = "IDs of existing subnets (`subnet-...`) in `vpc_id` for the nodes; they need a route to the internet (nodes pip-install their agent) and should auto-assign public IPs or sit behind a NAT. Required (non-empty) when `vpc_id` is set, must be empty when it is not."
  type        = list(string)
  default     = []
  nullable    = false

  validation {
    condition     = alltrue([for id in var.subnet_ids : can(regex("^subnet-[0-9a-f]+$", id))])
    error_message = "Every element of subnet_ids must be a subnet ID such as \"subnet-0123456789abcdef0\"."
  }
}

variable "vpc_cidr" {
  description = "IPv4 CIDR block of the VPC created when `vpc_id` is null, with a prefix length from /16 to /24. Each availability zone gets a subnet 4 bits smaller (a /20 of the default /16). Ignored when `vpc_id` is set."
  type        = string
  default     = "10.42.0.0/16"
  nullable    = false

  validation {
    condition = (
      can(cidrhost(var.vpc_cidr, 0)) &&
      can(regex("^[0-9]+[.][0-9]+[.][0-9]+[.][0-9]+/(1[6-9]|2[0-4])$", var.vpc_cidr))
    )
    error_message = "The vpc_cidr must be an IPv4 CIDR block with a prefix length from /16 to /24, such as \"10.42.0.0/16\"."
  }
}

variable "az_count" {
  description = "Number of availability zones (one public subnet each) in the VPC created when `vpc_id` is null: 1 to 6. More zones give spot requests more capacity pools. Capped at the number of zones the region has; ignored when `vpc_id` is set."
  type        = number
  default     = 3
  nullable    = false

  validation {
    condition     = var.az_count >= 1 && var.az_count <= 6 && floor(var.az_count) == var.az_count
    error_message = "The az_count must be a whole number from 1 to 6."
  }
}

variable "ami_id" {
  description = "AMI every node of this environment boots, for every instance type: an AMI ID (`ami-...`) or `resolve:ssm:<parameter>`. It needs bash, python3 (3.10 or newer) with venv and the AWS CLI; scripts' venvs layer over a framework Python at /opt/pytorch/bin/python when it has one. null (the default) lets each run pick AWS's PyTorch Deep Learning AMI (OSS NVIDIA driver, Ubuntu 24.04), resolved at launch, or refuse an instance type whose GPUs it does not drive. Only passed through to the `ami_id` output, so that every run uses the environment's AMI."
  type        = string
  default     = null

  validation {
    condition     = var.ami_id == null || can(regex("^(ami-[0-9a-f]{8,17}|resolve:ssm:/?[A-Za-z0-9_.:/-]+)$", var.ami_id))
    error_message = "The ami_id must be null, an AMI ID such as \"ami-0123456789abcdef0\" or an SSM parameter reference such as \"resolve:ssm:/my/ami-id\"."
  }
}

variable "tags" {
  description = "Tags added to every taggable resource of the module (the module adds `gridctl:environment` itself)."
  type        = map(string)
  default     = {}
  nullable    = false
}
