#!/usr/bin/env bash
set -euo pipefail
# gridctl node bootstrap, rendered from modules/machine/user-data.sh.tftpl.
# Installs the gridctl agent from the environment's bucket and runs it as a systemd service.
# No secrets here: AWS credentials come from the instance profile, and the agent learns its
# experiment from the instance's tags (IMDSv2) and the bucket.
#
# `gridctl-boot fail REASON LOG` (this script, installed on the node) is the node's last
# resort, run when the boot fails, when the agent has failed for good (gridctl-failed.service,
# through `gridctl-boot agent-failed LOG`) and when the node reaches its maximum lifetime
# (gridctl-lifetime.timer).

readonly bucket="gridctl-demo-123456789012-us-east-1"
readonly region="us-east-1"
readonly wheel_key="wheels/gridctl-0.1.0-py3-none-any.whl"
readonly run="swift-otter-7"
readonly machine="swift-otter-7-exp0"
readonly max_lifetime_hours=168
# The node contract's seams, unset on EC2: every path lives under GRIDCTL_NODE_ROOT and the
# metadata service answers at AWS_EC2_METADATA_SERVICE_ENDPOINT (as for the agent).
readonly node_root="${GRIDCTL_NODE_ROOT:-}"
readonly imds="${AWS_EC2_METADATA_SERVICE_ENDPOINT:-http://169.254.169.254}"
readonly opt="$node_root/opt/gridctl"
readonly wheel="$opt/wheels/${wheel_key##*/}"
readonly handler="$opt/bin/gridctl-boot"
readonly units="$node_root/etc/systemd/system"
readonly boot_log="$node_root/var/log/gridctl-boot.log"
readonly agent_log="$node_root/var/log/gridctl-agent.log"
# Services get no HOME (pip and torch keep caches there), nor /etc/profile.d's PATH.
readonly home="$node_root/root"
cuda_path=""
if [[ -d "$node_root/usr/local/cuda/bin" ]]; then
  cuda_path="$node_root/usr/local/cuda/bin:"
fi
readonly path="$cuda_path$PATH"
export AWS_DEFAULT_REGION="$region" HOME="$home" PATH="$path"

say() {
  printf '%s gridctl boot: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*"
}

# The newest Python of 3.10 or later (gridctl's minimum): an AMI's own python3 may be older.
newest_python() {
  local candidate
  for candidate in python3.13 python3.12 python3.11 python3.10 python3; do
    if command -v "$candidate" >/dev/null &&
      "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}

metadata() {
  local token
  token=$(curl -fsS -X PUT -H "X-aws-ec2-metadata-token-ttl-seconds: 300" \
    "$imds/latest/api/token") || return
  curl -fsS -H "X-aws-ec2-metadata-token: $token" "$imds/latest/meta-data/$1"
}

scale_to_zero() {
  local group
  group=$(aws autoscaling describe-auto-scaling-instances --instance-ids "$1" \
    --query "AutoScalingInstances[0].AutoScalingGroupName" --output text) || return
  if [[ "$group" == None ]]; then
    say "$1 is in no Auto Scaling group (any more): nothing to scale"
    return 0
  fi
  aws autoscaling set-desired-capacity --auto-scaling-group-name "$group" \
    --desired-capacity 0 || return
  say "scaled $group to zero"
}

# Every experiment of this machine that had not ended when the failure came is recorded
# failed with REASON and the tail of LOG, and LOG becomes its log when it has none, by the
# agent's own code run from the wheel with the system's Python (no venv needed); then the
# group goes to zero. Without the wheel, scaling to zero is all that is possible.
fail_node() {
  local reason=$1 log=$2 since instance python
  since=$(date +%s.%N)
  python=$(newest_python) || python=python3
  say "failing this node: $reason"
  # Stopped first, so that it cannot overwrite the records (a no-op once it has gone).
  systemctl stop gridctl-agent.service 2>/dev/null || true
  instance=$(metadata instance-id) || { say "cannot read this instance's id"; return 1; }
  if [[ -f "$wheel" ]]; then
    rm -rf "$opt/failsafe"
    if ! "$python" -m zipfile -e "$wheel" "$opt/failsafe" ||
      ! PYTHONPATH="$opt/failsafe" "$python" -m gridctl.agent failed --bucket "$bucket" \
        --run "$run" --machine "$machine" --instance "$instance" --since "$since" \
        --log "$log" "$reason"; then
      say "cannot record the failure in s3://$bucket"
    fi
  else
    say "no agent wheel on this node: its experiments' records cannot be written"
  fi
  scale_to_zero "$instance"
}

on_exit() {
  local status=$?
  set +e
  # Back to cloud-init's output alone, once tee has written everything to the boot log.
  exec 1>&3 2>&4 3>&- 4>&-
  wait "$tee_pid"
  if [[ "$status" -ne 0 ]]; then
    fail_node "the node could not install the gridctl agent (boot exit code $status)" \
      "$boot_log" 2>&1 | tee -a "$boot_log"
  fi
  exit "$status"
}

# A oneshot unit that runs the failure handler: NAME, DESCRIPTION, COMMAND.
handler_unit() {
  cat >"$units/$1" <<EOF
[Unit]
Description=$2

[Service]
Type=oneshot
ExecStart=$3
Environment=HOME=$home
Environment=PATH=$path
StandardOutput=append:$boot_log
StandardError=append:$boot_log
EOF
}

write_units() {
  cat >"$units/gridctl-agent.service" <<EOF
[Unit]
Description=gridctl node agent
Wants=network-online.target
After=network-online.target
# Three failures within ten minutes: the agent has failed for good.
StartLimitIntervalSec=600
StartLimitBurst=3
OnFailure=gridctl-failed.service

[Service]
Type=exec
ExecStart=$opt/venv/bin/python -m gridctl.agent node
Environment=HOME=$home
Environment=PATH=$path
Environment=AWS_DEFAULT_REGION=$region
StandardOutput=append:$agent_log
StandardError=append:$agent_log
# SIGTERM to the agent alone: it forwards it to the script with its grace period (10 s
# plus a 5 s kill margin) and then syncs; whatever is left after that gets SIGKILL. The
# stop timeout gives that and a final sync of up to a spot notice's 120 s.
KillMode=mixed
TimeoutStopSec=135
Restart=on-failure
RestartSec=10

[Install]
WantedBy=multi-user.target
EOF
  handler_unit gridctl-failed.service \
    "gridctl: record the agent's failure and scale this node's group to zero" \
    "$handler agent-failed $agent_log"
  handler_unit gridctl-lifetime.service "gridctl: end this node at its maximum lifetime" \
    "$handler fail \"the node reached its maximum lifetime of $max_lifetime_hours hours\" $agent_log"
  cat >"$units/gridctl-lifetime.timer" <<EOF
[Unit]
Description=gridctl: maximum lifetime of this node ($max_lifetime_hours hours)

[Timer]
OnBootSec=${max_lifetime_hours}h
AccuracySec=1min

[Install]
WantedBy=timers.target
EOF
}

boot() {
  mkdir -p "$opt/bin" "$opt/wheels" "$units" "$home" "${boot_log%/*}"
  exec 3>&1 4>&2
  exec > >(tee -a "$boot_log") 2>&1
  tee_pid=$!
  trap on_exit EXIT
  say "installing the gridctl agent from s3://$bucket/$wheel_key"
  install -m 0755 "${BASH_SOURCE[0]}" "$handler"
  write_units
  systemctl daemon-reload
  # From now on even a boot that hangs ends: the timer fails the node at its lifetime.
  systemctl start gridctl-lifetime.timer
  # The wheel first, so that a failure from here on can be recorded by the agent's code.
  aws s3 cp --only-show-errors "s3://$bucket/$wheel_key" "$wheel"
  local python
  python=$(newest_python) || { say "this AMI has no python3 of version 3.10 or newer"; return 1; }
  "$python" -m venv "$opt/venv"
  "$opt/venv/bin/python" -m pip install --quiet --no-input "$wheel"
  systemctl enable --now gridctl-agent.service
  say "gridctl-agent.service started (log: $agent_log)"
}

# Depending on its version, systemd may fire OnFailure= also on a failure it restarts the
# agent after: the node fails only once the agent is down for good.
agent_failed() {
  local state
  state=$(systemctl show --property=ActiveState --value gridctl-agent.service)
  if [[ "$state" == active || "$state" == activating || "$state" == reloading ]]; then
    say "gridctl-agent.service is $state: systemd is restarting it"
    return 0
  fi
  fail_node "the gridctl agent failed repeatedly" "$1"
}

case "${1:-boot}" in
  boot) boot ;;
  fail) fail_node "$2" "$3" ;;
  agent-failed) agent_failed "$2" ;;
  *)
    echo "usage: $0 [boot | fail REASON LOG | agent-failed LOG]" >&2
    exit 2
    ;;
esac
