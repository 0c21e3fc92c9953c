"""``aws`` on a simulated node: the AWS CLI calls the boot script and the failsafe make, and
nothing else, through boto3 at AWS_ENDPOINT_URL (moto). Each call is recorded in
``$GRIDCTL_NODE_ROOT/var/lib/shims/aws.jsonl``."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import boto3
import botocore.exceptions
import jmespath


def record(argv: list[str]) -> None:
    log = Path(os.environ["GRIDCTL_NODE_ROOT"]) / "var" / "lib" / "shims" / "aws.jsonl"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as f:
        f.write(json.dumps(argv) + "\n")


def client(service: str):
    return boto3.client(service, endpoint_url=os.environ["AWS_ENDPOINT_URL"])


def split(url: str) -> tuple[str, str]:
    bucket, _, key = url.removeprefix("s3://").partition("/")
    return bucket, key


def options(args: list[str]) -> tuple[list[str], dict[str, str]]:
    """Positional arguments, and ``--name value`` options (flags map to "")."""
    positional: list[str] = []
    named: dict[str, str] = {}
    rest = iter(args)
    for arg in rest:
        if arg == "--only-show-errors":
            named[arg[2:]] = ""
        elif arg.startswith("--"):
            named[arg[2:]] = next(rest)
        else:
            positional.append(arg)
    return positional, named


def s3_cp(source: str, dest: str) -> int:
    s3 = client("s3")
    if source.startswith("s3://"):
        bucket, key = split(source)
        try:
            body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except botocore.exceptions.ClientError:
            sys.stderr.write(
                "fatal error: An error occurred (404) when calling the HeadObject operation: "
                f'Key "{key}" does not exist\n'
            )
            return 1
        if dest == "-":
            sys.stdout.buffer.write(body)
        else:
            Path(dest).write_bytes(body)
        return 0
    bucket, key = split(dest)
    data = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
    s3.put_object(Bucket=bucket, Key=key, Body=data)
    return 0


def s3_ls(url: str) -> int:
    bucket, prefix = split(url)
    found = client("s3").list_objects_v2(Bucket=bucket, Prefix=prefix, Delimiter="/")
    for item in found.get("Contents", []):
        name = item["Key"][len(prefix.rpartition("/")[0]) :].lstrip("/")
        stamp = item["LastModified"].strftime("%Y-%m-%d %H:%M:%S")
        print(f"{stamp} {item['Size']:>10} {name}")
    return 0 if found.get("Contents") else 1


def autoscaling(command: str, named: dict[str, str]) -> int:
    asg = client("autoscaling")
    if command == "describe-auto-scaling-instances":
        found = asg.describe_auto_scaling_instances(InstanceIds=[named["instance-ids"]])
        value = jmespath.search(named["query"], found)
        print("None" if value is None else value)
        return 0
    if command == "set-desired-capacity":
        asg.set_desired_capacity(
            AutoScalingGroupName=named["auto-scaling-group-name"],
            DesiredCapacity=int(named["desired-capacity"]),
        )
        return 0
    return unsupported()


def unsupported() -> int:
    sys.stderr.write(f"aws shim: unsupported call: {sys.argv[1:]}\n")
    return 2


def main(argv: list[str]) -> int:
    record(argv)
    try:
        return call(argv)
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        sys.stderr.write(f"\nAn error occurred: {exc}\n")
        return 254


def call(argv: list[str]) -> int:
    service, command, *args = argv
    positional, named = options(args)
    if (service, command) == ("s3", "cp"):
        return s3_cp(*positional)
    if (service, command) == ("s3", "ls"):
        return s3_ls(*positional)
    if service == "autoscaling":
        return autoscaling(command, named)
    return unsupported()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
