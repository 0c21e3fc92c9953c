data "aws_region" "current" {}

data "aws_partition" "current" {}

data "aws_caller_identity" "current" {}

locals {
  create_vpc = var.vpc_id == null

  # gridctl:environment is what the node role's conditions match on: callers cannot override it.
  tags = merge(var.tags, { "gridctl:environment" = var.name })

  # The region's zones, in a stable order, capped at az_count (only read when creating a VPC).
  azs = local.create_vpc ? slice(
    sort(data.aws_availability_zones.available[0].names), 0,
    min(var.az_count, length(data.aws_availability_zones.available[0].names))
  ) : []

  vpc_id     = local.create_vpc ? aws_vpc.this[0].id : var.vpc_id
  subnet_ids = local.create_vpc ? aws_subnet.this[*].id : var.subnet_ids

  # Role and profile names are account-wide: the region keeps same-named environments in
  # two regions apart (at most 8 + 24 + 1 + 14 + 5 = 52 of the 64 characters IAM allows).
  iam_name = "gridctl-${var.name}-${data.aws_region.current.name}-node"

  arn_prefix = "arn:${data.aws_partition.current.partition}"
  account_id = data.aws_caller_identity.current.account_id
  region     = data.aws_region.current.name
}

################################################################################
# Network (only when no vpc_id is given): public subnets, no NAT gateway
################################################################################

data "aws_availability_zones" "available" {
  count = local.create_vpc ? 1 : 0

  state = "available"

  filter {
    name   = "opt-in-status"
    values = ["opt-in-not-required"]
  }
}

resource "aws_vpc" "this" {
  count = local.create_vpc ? 1 : 0

  #checkov:skip=CKV2_AWS_11:Flow logs would cost money while the environment sits idle; the VPC has no inbound path from outside (the nodes' security group admits only its own members) and only holds short-lived training nodes.

  cidr_block           = var.vpc_cidr
  enable_dns_support   = true
  enable_dns_hostnames = true

  tags = merge(local.tags, { Name = "gridctl-${var.name}" })
}

# Take every rule away from the VPC's default security group, so nothing that lands in it by
# mistake can talk to anything.
resource "aws_default_security_group" "this" {
  count = local.create_vpc ? 1 : 0

  vpc_id = aws_vpc.this[0].id

  tags = merge(local.tags, { Name = "gridctl-${var.name}-default-deny" })
}

resource "aws_internet_gateway" "this" {
  count = local.create_vpc ? 1 : 0

  vpc_id = aws_vpc.this[0].id

  tags = merge(local.tags, { Name = "gridctl-${var.name}" })
}

resource "aws_subnet" "this" {
  count = length(local.azs)

  #checkov:skip=CKV_AWS_130:Nodes need outbound internet (pip install, S3, AWS APIs) and there is deliberately no NAT gateway, which would cost money while the environment sits idle; the security group admits only its own members, so a public IP accepts no connection from outside.

  vpc_id                  = aws_vpc.this[0].id
  availability_zone       = local.azs[count.index]
  cidr_block              = cidrsubnet(var.vpc_cidr, 4, count.index)
  map_public_ip_on_launch = true

  tags = merge(local.tags, { Name = "gridctl-${var.name}-public-${local.azs[count.index]}" })
}

resource "aws_route_table" "this" {
  count = local.create_vpc ? 1 : 0

  vpc_id = aws_vpc.this[0].id

  route {
    cidr_block = "0.0.0.0/0"
    gateway_id = aws_internet_gateway.this[0].id
  }

  tags = merge(local.tags, { Name = "gridctl-${var.name}-public" })
}

resource "aws_route_table_association" "this" {
  count = length(local.azs)

  subnet_id      = aws_subnet.this[count.index].id
  route_table_id = aws_route_table.this[0].id
}

# S3 through a gateway endpoint: free, and the nodes' bundle, datastore and artifact traffic
# stays off the internet gateway. Only in the VPC created here: a VPC of the user's own may
# have an S3 endpoint (with its own policy) already, and a second one on the same route
# tables would clash with it.
resource "aws_vpc_endpoint" "s3" {
  count = local.create_vpc ? 1 : 0

  vpc_id            = aws_vpc.this[0].id
  service_name      = "com.amazonaws.${local.region}.s3"
  vpc_endpoint_type = "Gateway"
  route_table_ids   = [aws_route_table.this[0].id]

  tags = merge(local.tags, { Name = "gridctl-${var.name}-s3" })
}

# Given subnets must lie in the given VPC: otherwise every run would fail late, when its Auto
# Scaling group combines them with the security group below.
data "aws_subnet" "given" {
  for_each = local.create_vpc ? toset([]) : toset(var.subnet_ids)

  id = each.value

  lifecycle {
    postcondition {
      condition     = self.vpc_id == var.vpc_id
      error_message = "Subnet ${each.value} is in ${self.vpc_id}, not in vpc_id ${coalesce(var.vpc_id, "(null)")}."
    }
  }
}

################################################################################
# Security group: inbound from its own members only
################################################################################

resource "aws_security_group" "this" {
  #checkov:skip=CKV2_AWS_5:Attached by the launch templates of modules/machine, which per-run Terraform roots apply separately.
  #checkov:skip=CKV_AWS_382:Nodes must reach PyPI (pip install), S3 and the EC2/Auto Scaling APIs; only S3 has a (gateway) endpoint, and there is no NAT gateway with a fixed address to narrow the rest to; the only ingress is from members of the group itself.

  name = "gridctl-${var.name}"
  # The description predates the members-only rule below; AWS cannot change a security
  # group's description, so a new one would replace the group under running nodes.
  description = "gridctl ${var.name} nodes: no inbound rule (nodes pull their work from S3); all outbound for pip, S3 and AWS APIs"
  vpc_id      = local.vpc_id

  # Nodes pull everything (agent wheel, code bundles, datastores) and push artifacts and
  # logs themselves, and are reached only through S3 and the AWS APIs. The one exception
  # is a multi-node experiment (a gang), whose nodes connect to each other (rendezvous
  # port, NCCL/gloo on ports of their own choosing): members of this group may reach each
  # other on every port and protocol, and nothing else may reach them. An inline rule
  # makes Terraform authoritative: a rule added by hand is removed at the next apply.
  ingress {
    description = "Nodes of this environment only (the peers of a multi-node experiment), every port and protocol"
    from_port   = 0
    to_port     = 0
    protocol    = "-1"
    self        = true
  }

  egress {
    description = "Outbound to anywhere: PyPI and package mirrors, S3 and AWS APIs (no NAT or VPC endpoints to narrow it)"
    from_port   = 0
    to_port     = 0
    protocol    = "-1"
    cidr_blocks = ["0.0.0.0/0"]
  }

  tags = merge(local.tags, { Name = "gridctl-${var.name}" })

  lifecycle {
    precondition {
      condition     = var.vpc_id == null ? length(var.subnet_ids) == 0 : length(var.subnet_ids) > 0
      error_message = "subnet_ids is required (non-empty) when vpc_id is set, and must be empty when vpc_id is null (a VPC is created)."
    }
  }
}

################################################################################
# Bucket: private, encrypted, TLS only
################################################################################

resource "aws_s3_bucket" "this" {
  #checkov:skip=CKV_AWS_21:No versioning: the bucket holds re-creatable run data (bundles are rebuilt from source, artifacts and logs belong to runs that can be rerun) and per-run Terraform state that is deleted with its run; old versions would only keep costing storage, and `gridctl down` must leave nothing behind.
  #checkov:skip=CKV_AWS_18:No access logging: it would need a second bucket that outlives `gridctl down` and costs money while idle; the bucket is private to the account (public access block, owner-enforced, TLS-only policy).
  #checkov:skip=CKV_AWS_144:No cross-region replication: the data is re-creatable run data and per-run Terraform state, and a replica would double storage and outlive `gridctl down`.
  #checkov:skip=CKV_AWS_145:SSE-S3 (AES256) encrypts at rest; a customer-managed KMS key would cost money while idle and need key grants for every node role, for re-creatable run data.
  #checkov:skip=CKV2_AWS_62:No event notifications: nothing consumes them; agents and the CLI read the objects they need directly.

  bucket        = var.bucket_name
  force_destroy = var.force_destroy

  tags = merge(local.tags, { Name = var.bucket_name })
}

resource "aws_s3_bucket_public_access_block" "this" {
  bucket = aws_s3_bucket.this.id

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "this" {
  bucket = aws_s3_bucket.this.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "this" {
  bucket = aws_s3_bucket.this.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "this" {
  bucket = aws_s3_bucket.this.id

  rule {
    id     = "abort-incomplete-multipart-uploads"
    status = "Enabled"

    # Every object: an empty prefix (an empty filter block draws a provider warning).
    filter {
      prefix = ""
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }
}

data "aws_iam_policy_document" "bucket" {
  statement {
    sid     = "DenyInsecureTransport"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      aws_s3_bucket.this.arn,
      "${aws_s3_bucket.this.arn}/*",
    ]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "this" {
  count = var.deny_insecure_transport ? 1 : 0

  bucket = aws_s3_bucket.this.id
  policy = data.aws_iam_policy_document.bucket.json

  # A bucket policy put while the public access block is still being created can fail.
  depends_on = [aws_s3_bucket_public_access_block.this]
}

################################################################################
# Node role: what the agent and the boot script call, and nothing else
################################################################################

data "aws_iam_policy_document" "assume" {
  statement {
    sid     = "EC2AssumeRole"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "this" {
  name               = local.iam_name
  description        = "gridctl ${var.name} nodes: read their inputs and write their run in the bucket, scale down their own environment's groups"
  assume_role_policy = data.aws_iam_policy_document.assume.json

  tags = local.tags
}

# What each statement grants is exactly what the agent (agent/) and the boot script
# (modules/machine/user-data.sh.tftpl) call; tests/aws/test_node_role.py records every
# request simulated nodes make and checks it against this document, both ways.
data "aws_iam_policy_document" "node" {
  # Code bundles and datastores in, a run's records, logs and artifacts in and out, the
  # agent wheel for the boot script, the scripts' Python environments (venvs/) in and out.
  # Never the environment's record or any Terraform state (gridctl/*, env:/*), and never a
  # write outside runs/ and venvs/.
  statement {
    sid     = "ReadNodeInputs"
    actions = ["s3:GetObject"]
    resources = [
      "${aws_s3_bucket.this.arn}/runs/*",
      "${aws_s3_bucket.this.arn}/bundles/*",
      "${aws_s3_bucket.this.arn}/datastores/*",
      "${aws_s3_bucket.this.arn}/wheels/*",
      "${aws_s3_bucket.this.arn}/venvs/*",
    ]
  }

  # The first node that needs a venv claims its key, builds it and uploads it there for the
  # environment's other nodes (agent/runner/venv.py); nothing there is ever deleted by a node.
  statement {
    sid       = "ShareVenvs"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.this.arn}/venvs/*"]
  }

  statement {
    sid       = "WriteRuns"
    actions   = ["s3:PutObject", "s3:DeleteObject"]
    resources = ["${aws_s3_bucket.this.arn}/runs/*"]
  }

  # Listing a control folder or artifacts to restore (runs/), a datastore's versions, a
  # venv key's objects (venvs/).
  statement {
    sid       = "ListRunsAndDatastores"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.this.arn]

    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["runs/*", "datastores/*", "venvs/*"]
    }
  }

  # The agent (and the boot script when it fails) finds its group from its instance id.
  # Describe calls support no resource-level permissions: "*" is the only valid resource.
  statement {
    sid       = "FindOwnGroup"
    actions   = ["autoscaling:DescribeAutoScalingInstances"]
    resources = ["*"]
  }

  # A spot node records the price it pays (the ledger, SPEC section 11): the spot price
  # history of its type in its zone. A Describe call: "*" is its only valid resource, and
  # it reads public prices, nothing of the account.
  statement {
    sid       = "ReadSpotPrices"
    actions   = ["ec2:DescribeSpotPriceHistory"]
    resources = ["*"]
  }

  # Scaling its group to zero when its experiments end; after `gridctl interrupt`, ending
  # its own instance while keeping the capacity (as a reclaim does). IAM cannot tie a group
  # to the calling instance, nor pin the desired capacity to zero (SetDesiredCapacity has
  # no condition key for it): the environment's groups are the narrowest scope, and
  # without UpdateAutoScalingGroup their max_size (the experiment's node count) caps it.
  statement {
    sid = "ScaleEnvironmentGroups"
    actions = [
      "autoscaling:SetDesiredCapacity",
      "autoscaling:TerminateInstanceInAutoScalingGroup",
    ]
    resources = ["${local.arn_prefix}:autoscaling:${local.region}:${local.account_id}:autoScalingGroup:*:autoScalingGroupName/gridctl-*"]

    condition {
      test     = "StringEquals"
      variable = "aws:ResourceTag/gridctl:environment"
      values   = [var.name]
    }
  }

  # `--image` from Amazon ECR: the agent gets a registry token for `docker login`, and ECR
  # checks docker's pull with that token against this role. A token is for a registry, not
  # a repository: GetAuthorizationToken supports no resource-level permissions, so "*" is
  # its only valid resource (a token alone reads nothing without the grant below).
  statement {
    sid       = "LogInToEcr"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"]
  }

  # Pulling, and nothing else (no push, no listing or describing), from this account's
  # repositories in any region. An image of another account also needs that repository's
  # own policy to allow this role; widen this resource deliberately if you pull one.
  statement {
    sid = "PullImagesOfThisAccount"
    actions = [
      "ecr:BatchCheckLayerAvailability",
      "ecr:BatchGetImage",
      "ecr:GetDownloadUrlForLayer",
    ]
    resources = ["${local.arn_prefix}:ecr:*:${local.account_id}:repository/*"]
  }
}

resource "aws_iam_role_policy" "this" {
  name   = "gridctl-node"
  role   = aws_iam_role.this.id
  policy = data.aws_iam_policy_document.node.json
}

resource "aws_iam_instance_profile" "this" {
  name = local.iam_name
  role = aws_iam_role.this.name

  tags = local.tags
}
