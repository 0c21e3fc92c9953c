"""The agent on an EC2 node: reads its instance over IMDSv2, runs its machine's
experiments, watches for spot notices, reports to the bucket, scales its group to zero."""
