"""Which AMI a node boots, by the GPU generation of its instance type.

An AMI the user gave to ``gridctl up --ami`` boots every instance type. Otherwise each run
gets the AWS Deep Learning Base AMI whose NVIDIA driver supports its GPUs, as
``resolve:ssm:<AWS's public parameter>``: EC2 resolves that at every launch, so a node
boots the current release (driver and security fixes), not one frozen when the
environment was made.

- No GPU, or Turing and newer (T4, A10G, L4, A100, H100): the Base OSS Nvidia Driver GPU
  AMI on Ubuntu 22.04. NVIDIA's open kernel modules drive Turing and newer GPUs only.
- Volta (V100: p3, p3dn) and Maxwell (M60: g3): refused. The only Deep Learning AMI with a
  driver for them, the Base Proprietary Nvidia Driver AMI, runs Amazon Linux 2, whose
  systemd (219) cannot run the node agent's units (``StandardOutput=append:`` and
  ``Type=exec`` need 240 or later); an AMI of the user's own can boot them.
- Kepler (K80: p2): no current Deep Learning AMI has a driver for it; only an AMI of the
  user's own can boot it.

The parameter names follow AWS's rule: the AMI's name without "Deep", "Learning" and "AMI".
"""

from __future__ import annotations

from dataclasses import dataclass

from gridctl.infra.errors import InfraError

_PARAMETER = "/aws/service/deeplearning/ami/x86_64/{}/latest/ami-id"


@dataclass(frozen=True)
class Image:
    """What a launch template needs of an AMI: how to find it and its root device's name
    (the root volume's size and encryption apply to that device)."""

    image_id: str
    root_device_name: str


OSS_DRIVER = Image(
    f"resolve:ssm:{_PARAMETER.format('base-oss-nvidia-driver-gpu-ubuntu-22.04')}", "/dev/sda1"
)
# AMIs built on Ubuntu (the Deep Learning Base AMIs included) name their root /dev/sda1.
DEFAULT_ROOT_DEVICE = "/dev/sda1"

_UNSUPPORTED = {
    "K80": "no current AWS Deep Learning AMI has a driver for it",
    "V100": "the only AWS Deep Learning AMI with a driver for it runs Amazon Linux 2, whose"
    " systemd is too old for the gridctl agent's service",
}
_UNSUPPORTED["M60"] = _UNSUPPORTED["V100"]


def image_for(instance_type: str, gpu_model: str | None, own: Image | None) -> Image:
    """The user's own AMI, else the Deep Learning Base AMI that drives ``gpu_model``;
    refuses a type that no current Deep Learning AMI supports."""
    if own is not None:
        return own
    if gpu_model in _UNSUPPORTED:
        raise InfraError(
            f"{instance_type} ({gpu_model} GPUs) has no default AMI: {_UNSUPPORTED[gpu_model]};"
            " pick a newer type such as g4dn.xlarge, or boot an AMI of your own with a driver"
            " for it ('gridctl up --ami ami-...')"
        )
    return OSS_DRIVER
