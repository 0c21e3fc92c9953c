"""Which AMI a node boots, by the GPU generation of its instance type.

An AMI the user gave to ``gridctl up --ami`` boots every instance type. Otherwise each run
gets AWS's PyTorch Deep Learning AMI, ``Deep Learning OSS Nvidia Driver AMI GPU PyTorch
2.12 (Ubuntu 24.04)``, as ``resolve:ssm:<AWS's public parameter>``: EC2 resolves that at
every launch, so a node boots the newest build of that line (driver and security fixes),
not one frozen when the environment was made. Its framework Python,
``/opt/pytorch/bin/python``, already has a CUDA build of PyTorch: the venv a script runs in
layers over it, so ``import torch`` works with nothing to install, where the Deep Learning
Base AMI (drivers, no framework) made every node download and install torch.

- No GPU, or Turing and newer (T4, A10G, L4, A100, H100): the PyTorch AMI. AWS lists GPU
  types only (G4dn, G5, G6, G6e, P4d, P4de, P5 and newer) because NVIDIA's open kernel
  modules drive Turing and newer GPUs only; on a CPU type the driver finds no GPU and the
  rest works as on a GPU type. CPU types boot it too rather than the Base AMI so that a
  script imports the same torch on every type (a CPU sweep does not install a CUDA wheel
  of its own) and runs on CPU and GPU types share their cached venvs, which are keyed by
  the AMI.
- Volta (V100: p3, p3dn) and Maxwell (M60: g3): refused. The PyTorch and Base OSS AMIs do
  not list them; the only Deep Learning AMI with a driver for them, the Base Proprietary
  Nvidia Driver AMI, runs Amazon Linux 2, whose systemd (219) cannot run the node agent's
  units (``StandardOutput=append:`` and ``Type=exec`` need 240 or later); an AMI of the
  user's own can boot them.
- Kepler (K80: p2): no current Deep Learning AMI has a driver for it; only an AMI of the
  user's own can boot it.

AWS publishes no "latest PyTorch" parameter: each parameter names one PyTorch minor
release and one OS, and its ``latest`` is the newest build of that line. The minor release
is pinned here on purpose (every node of a sweep, and every resume, imports the same torch;
cached venvs stay valid) and moves forward when AWS stops patching it (the DLAMI support
policy: a year after the PyTorch release). 2.12 is the newest x86_64 line on Ubuntu in
AWS's release notes (recent lines are built on Ubuntu 24.04 and Amazon Linux 2023, not
22.04); Ubuntu keeps the root device ``/dev/sda1`` and the OS the node script was written
for. gridctl's catalogue has no Graviton GPU types, so only x86_64 images are named.

The parameter names follow AWS's rule: the AMI's name without "Deep", "Learning" and "AMI".
"""

from __future__ import annotations

from dataclasses import dataclass

from gridctl.infra.errors import InfraError

_PARAMETER = "resolve:ssm:/aws/service/deeplearning/ami/x86_64/{}/latest/ami-id"


@dataclass(frozen=True)
class Image:
    """What a launch template needs of an AMI: how to find it and its root device's name
    (the root volume's size and encryption apply to that device)."""

    image_id: str
    root_device_name: str


# AMIs built on Ubuntu (the Deep Learning AMIs included) name their root /dev/sda1.
DEFAULT_ROOT_DEVICE = "/dev/sda1"

PYTORCH = Image(
    _PARAMETER.format("oss-nvidia-driver-gpu-pytorch-2.12-ubuntu-24.04"), DEFAULT_ROOT_DEVICE
)
"""What a run boots by default."""

BASE_OSS_DRIVER = Image(
    _PARAMETER.format("base-oss-nvidia-driver-gpu-ubuntu-22.04"), DEFAULT_ROOT_DEVICE
)
"""What runs booted before each run recorded its AMI (they keep it)."""

_UNSUPPORTED = {
    "K80": "no current AWS Deep Learning AMI has a driver for it",
    "V100": "the only AWS Deep Learning AMI with a driver for it runs Amazon Linux 2, whose"
    " systemd is too old for the gridctl agent's service",
}
_UNSUPPORTED["M60"] = _UNSUPPORTED["V100"]


def image_for(instance_type: str, gpu_model: str | None, own: Image | None) -> Image:
    """The user's own AMI, else the PyTorch Deep Learning AMI when its driver supports
    ``gpu_model`` (or there is no GPU); refuses a type no current Deep Learning AMI drives."""
    if own is not None:
        return own
    if gpu_model in _UNSUPPORTED:
        raise InfraError(
            f"{instance_type} ({gpu_model} GPUs) has no default AMI: {_UNSUPPORTED[gpu_model]};"
            " pick a newer type such as g4dn.xlarge, or boot an AMI of your own with a driver"
            " for it ('gridctl up --ami ami-...')"
        )
    return PYTORCH
