"""Which AMI each catalogued instance type boots when the environment has none of its own:
the PyTorch Deep Learning AMI for CPU types and GPUs its open driver supports, a refusal for
older GPUs; an AMI of the user's own boots every type."""

import pytest

from gridctl.cli.machines import INSTANCE_TYPES
from gridctl.infra import amis
from gridctl.infra.errors import InfraError

OWN = amis.Image("ami-0123456789abcdef0", "/dev/xvda")
# GPUs that the OSS NVIDIA driver of the Deep Learning AMIs does not drive.
UNDRIVEN = {"K80", "V100", "M60"}


@pytest.mark.parametrize("itype", INSTANCE_TYPES.values(), ids=lambda t: t.name)
def test_every_type_boots_the_pytorch_ami_or_is_refused(itype):
    assert amis.image_for(itype.name, itype.gpu_model, OWN) == OWN
    if itype.gpu_model in UNDRIVEN:
        with pytest.raises(InfraError, match=rf"^{itype.name} \(.+\) has no default AMI"):
            amis.image_for(itype.name, itype.gpu_model, None)
    else:
        assert amis.image_for(itype.name, itype.gpu_model, None) == amis.PYTORCH


def test_the_default_is_a_pytorch_line_resolved_at_launch():
    parameter = amis.PYTORCH.image_id.removeprefix("resolve:ssm:")
    assert parameter == (
        "/aws/service/deeplearning/ami/x86_64/"
        "oss-nvidia-driver-gpu-pytorch-2.12-ubuntu-24.04/latest/ami-id"
    )
    assert amis.PYTORCH.root_device_name == "/dev/sda1"  # Ubuntu
