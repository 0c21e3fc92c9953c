#!/usr/bin/env bash
set -euo pipefail
# gridctl node bootstrap, rendered from modules/experiment/user-data.sh.tftpl.
# Installs the gridctl agent from the environment's bucket and starts it. No secrets here:
# AWS credentials come from the instance profile, and the agent learns its experiment from
# the instance's tags (IMDSv2) and the bucket.

readonly bucket="gridctl-demo-123456789012-us-east-1"
readonly region="us-east-1"
readonly wheel_key="wheels/gridctl-0.1.0-py3-none-any.whl"
readonly root=/opt/gridctl
readonly log=/var/log/gridctl-agent.log
export AWS_DEFAULT_REGION="$region"

# Without an agent nothing would ever stop this node: if the bootstrap fails, scale its own
# Auto Scaling group to zero (the node role may do that for its environment's groups).
on_exit() {
  local status=$?
  if [[ "$status" -ne 0 ]]; then
    echo "gridctl: bootstrap failed (exit $status); scaling this node's group to zero" >&2
    local token instance group
    token=$(curl -fsS -X PUT -H "X-aws-ec2-metadata-token-ttl-seconds: 300" \
      http://169.254.169.254/latest/api/token) || exit "$status"
    instance=$(curl -fsS -H "X-aws-ec2-metadata-token: $token" \
      http://169.254.169.254/latest/meta-data/instance-id) || exit "$status"
    group=$(aws autoscaling describe-auto-scaling-instances --instance-ids "$instance" \
      --query "AutoScalingInstances[0].AutoScalingGroupName" --output text) || exit "$status"
    aws autoscaling set-desired-capacity --auto-scaling-group-name "$group" \
      --desired-capacity 0 || true
  fi
  exit "$status"
}
trap on_exit EXIT

mkdir -p "$root/wheels"
# The newest Python of 3.10 or later (gridctl's minimum): Amazon Linux 2's own python3 is
# 3.7, and its Deep Learning AMI (V100 and M60 types) adds python3.10 beside it.
python=""
for candidate in python3.13 python3.12 python3.11 python3.10 python3; do
  if command -v "$candidate" >/dev/null \
    && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
    python="$candidate"
    break
  fi
done
if [[ -z "$python" ]]; then
  echo "gridctl: this AMI has no python3 of version 3.10 or newer" >&2
  exit 1
fi
"$python" -m venv "$root/venv"
wheel="$root/wheels/$(basename "$wheel_key")"
aws s3 cp --only-show-errors "s3://$bucket/$wheel_key" "$wheel"
"$root/venv/bin/python" -m pip install --quiet --no-input "$wheel"

# A transient systemd unit: the agent outlives cloud-init and this script, and its output
# goes to $log (systemctl status gridctl-agent shows how it is doing).
systemd-run --unit=gridctl-agent --description="gridctl node agent" \
  --setenv=AWS_DEFAULT_REGION="$region" \
  --property=StandardOutput="append:$log" --property=StandardError="append:$log" \
  "$root/venv/bin/python" -m gridctl.agent node
