"""Grid YAML configs: a realistic file round trip, and one clear error per mistake."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gridctl.cli.config import RunConfig, load_config, merge_params
from gridctl.cli.errors import EXIT_USAGE, GridctlError
from gridctl.cli.options import RUN_OPTIONS

GRID_FILE = """\
# Main compute configuration.
name: cifar-sweep
description: ResNet on CIFAR-10, Adam vs SGD
git: https://github.com/acme/cifar@v1.2   # code from this commit instead of the local folder
compute:
  provider:
    credentials: research      # AWS profile
    region: eu-west-1
    vendor: aws
  train:
    cpus: 3
    gpus: 2
    instance: 1_v100_16gb
    memory: 60G
    nodes: 2
    use_spot: true
    auto_resume: true
    datastore_name: cifar10
    datastore_version: 2
    datastore_mount_dir: /opt/datastore
    framework: "lightning"
    scratch:
      - size_gb: 100
        mount_path: /scratch
        name: tmp
    environment:
      WANDB_PROJECT: "cifar"
      OMP_NUM_THREADS: 4
    disk_size: 200
    max_runtime: 12h
    max_cost: 150
    dependency_file_info:
      package_manager: pip
      path: requirements-gpu.txt
    image: 123456789012.dkr.ecr.eu-west-1.amazonaws.com/cifar:2.1   # instead of the file above
    actions: null
hyper_params:
  settings:
    strategy: random_search
    trials: 4
    seed: 42
  params:
    learning_rate: uniform(0.001, 0.008, 20)
    --optimizer: "['adam', 'sgd']"
    gamma: 0.234
    layers: [2, 4]
    pretrained: true
    epochs: 10
    tag: 1e-5
"""


def write(tmp_path: Path, text: str, name: str = "config.yml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def error(path: Path) -> str:
    with pytest.raises(GridctlError) as exc:
        load_config(path)
    assert exc.value.exit_code == EXIT_USAGE
    assert "\n" not in exc.value.message
    prefix = f"{path}: "
    assert exc.value.message.startswith(prefix)
    return exc.value.message.removeprefix(prefix)


def test_realistic_grid_file_round_trip(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GRID_FILE))
    assert config == RunConfig(
        values=dict(
            name="cifar-sweep",
            description="ResNet on CIFAR-10, Adam vs SGD",
            git="https://github.com/acme/cifar@v1.2",
            dependency_file="requirements-gpu.txt",
            image="123456789012.dkr.ecr.eu-west-1.amazonaws.com/cifar:2.1",
            cloud="aws",
            credential="research",
            cpus=3,
            gpus=2,
            nodes=2,
            instance_type="p3.2xlarge",
            memory="60G",
            use_spot=True,
            auto_resume=True,
            datastore_name="cifar10",
            datastore_version=2,
            datastore_mount_dir="/opt/datastore",
            scratch_size=100,
            scratch_mount_path="/scratch",
            disk_size=200,
            max_runtime="12h",
            max_cost=150,
            framework="lightning",
            strategy="random_search",
            trials=4,
            seed=42,
        ),
        region="eu-west-1",
        script_env={"WANDB_PROJECT": "cifar", "OMP_NUM_THREADS": "4"},
        params=(
            ("learning_rate", "uniform(0.001, 0.008, 20)"),
            ("optimizer", "['adam', 'sgd']"),
            ("gamma", "0.234"),
            ("layers", "[2, 4]"),
            ("pretrained", "True"),
            ("epochs", "10"),
            ("tag", "1e-5"),
        ),
    )


def test_every_option_with_a_config_key_is_read_from_it(tmp_path: Path) -> None:
    """The realistic file sets every key: each option that has one gets the file's value."""
    configured = {entry.name for entry in RUN_OPTIONS if entry.config is not None}
    assert set(load_config(write(tmp_path, GRID_FILE)).values) == configured


@pytest.mark.parametrize("text", ["{}\n", "compute:\nhyper_params:\n", "compute: {train: {}}\n"])
def test_silent_files_give_empty_config(tmp_path: Path, text: str) -> None:
    assert load_config(write(tmp_path, text)) == RunConfig()


def test_nulls_mean_absent(tmp_path: Path) -> None:
    text = """\
    compute:
      provider: {vendor: null, region: null, credentials: null}
      train:
        cpus: null
        memory: null
        datastore_name: null
        datastore_version: null
        datastore_mount_dir: null
        scratch: []
        environment: null
        nodes: 0
        distributed: false
    hyper_params:
      settings: {strategy: null, trials: null, seed: null}
      params: null
    """
    assert load_config(write(tmp_path, text)) == RunConfig()


def test_local_vendor_and_aws_instance_name(tmp_path: Path) -> None:
    text = "compute: {provider: {vendor: local}, train: {instance: g4dn.xlarge, cpus: 0.5}}\n"
    config = load_config(write(tmp_path, text))
    values = config.values
    assert (values["cloud"], values["instance_type"], values["cpus"]) == (
        "local",
        "g4dn.xlarge",
        0.5,
    )


def test_strategy_none_and_seed_zero(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "hyper_params: {settings: {strategy: none, seed: 0}}\n"))
    assert (config.values["strategy"], config.values["seed"]) == ("none", 0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("nmae: x\n", "unknown key nmae (did you mean name?)"),
        ("compute: {trian: {}}\n", "unknown key compute.trian (did you mean train?)"),
        ("compute: {train: {gpu: 1}}\n", "unknown key compute.train.gpu (did you mean gpus?)"),
        (
            "compute: {train: {instance_type: p3.2xlarge}}\n",
            "unknown key compute.train.instance_type (did you mean instance?)",
        ),
        ("compute: {provider: {zone: a}}\n", "unknown key compute.provider.zone"),
        (
            "compute: {train: {scratch: [{size: 1}]}}\n",
            "unknown key compute.train.scratch[0].size (did you mean size_gb?)",
        ),
        (
            "hyper_params: {settings: {trial: 3}}\n",
            "unknown key hyper_params.settings.trial (did you mean trials?)",
        ),
        ("hyper_params: {param: {}}\n", "unknown key hyper_params.param (did you mean params?)"),
        ("1: x\n", "unknown key 1"),
    ],
)
def test_unknown_keys_name_their_path(tmp_path: Path, text: str, expected: str) -> None:
    assert error(write(tmp_path, text)) == expected


def test_error_is_prefixed_with_the_file_name(tmp_path: Path) -> None:
    path = write(tmp_path, "compute: {train: {gpu: 1}}\n", name="experiment.yml")
    with pytest.raises(GridctlError) as exc:
        load_config(path)
    assert exc.value.message == f"{path}: unknown key compute.train.gpu (did you mean gpus?)"


@pytest.mark.parametrize(
    ("train", "expected"),
    [
        ("cpus: many", "compute.train.cpus must be a positive number, not 'many'"),
        ("cpus: 0", "compute.train.cpus must be a positive number, not 0"),
        ("cpus: true", "compute.train.cpus must be a positive number, not True"),
        ("gpus: 1.5", "compute.train.gpus must be a whole number >= 0, not 1.5"),
        ("gpus: -1", "compute.train.gpus must be a whole number >= 0, not -1"),
        ("gpus: '2'", "compute.train.gpus must be a whole number >= 0, not '2'"),
        ("use_spot: yes please", "compute.train.use_spot must be true or false, not 'yes please'"),
        ("auto_resume: 1", "compute.train.auto_resume must be true or false, not 1"),
        ("instance: 5", "compute.train.instance must be a non-empty string, not 5"),
        ("memory: 10", "compute.train.memory 10: the unit is required (e.g. 10G)"),
        ("memory: lots", "compute.train.memory 'lots': expected a size such as 512M, 10G or 1.5T"),
        ("memory: [10G]", "compute.train.memory must be a size such as 10G, not ['10G']"),
        ("datastore_name: ''", "compute.train.datastore_name must be a non-empty string, not ''"),
        (
            "datastore_version: 0",
            "compute.train.datastore_version must be a positive whole number, not 0",
        ),
        (
            "datastore_version: latest",
            "compute.train.datastore_version must be a positive whole number, not 'latest'",
        ),
        (
            "datastore_mount_dir: data",
            "compute.train.datastore_mount_dir must be an absolute path, not 'data'",
        ),
        ("framework: [torch]", "compute.train.framework must be a non-empty string, not ['torch']"),
        ("nodes: -1", "compute.train.nodes must be a whole number >= 0, not -1"),
        ("nodes: 65", "compute.train.nodes 65: an experiment runs on at most 64 nodes"),
        ("nodes: two", "compute.train.nodes must be a whole number >= 0, not 'two'"),
        (
            "disk_size: 4",
            "compute.train.disk_size must be a whole number of GiB from 8 to 16384, not 4",
        ),
        (
            "disk_size: 100G",
            "compute.train.disk_size must be a whole number of GiB from 8 to 16384, not '100G'",
        ),
        (
            "disk_size: 20.5",
            "compute.train.disk_size must be a whole number of GiB from 8 to 16384, not 20.5",
        ),
        (
            "environment: [A]",
            "compute.train.environment must be a mapping of NAME: value, not ['A']",
        ),
        (
            "environment: {MY VAR: x}",
            "compute.train.environment has 'MY VAR', which is not a valid variable name",
        ),
        (
            "environment: {TOKEN: null}",
            "compute.train.environment.TOKEN must be a string, number or boolean, not None",
        ),
        (
            "scratch: {size_gb: 1}",
            "compute.train.scratch must be a list with one entry, not {'size_gb': 1}",
        ),
        ("scratch: [5]", "compute.train.scratch[0] must be a mapping, not 5"),
        ("scratch: [{mount_path: /s}]", "compute.train.scratch[0].size_gb is required"),
        (
            "scratch: [{size_gb: 0}]",
            "compute.train.scratch[0].size_gb must be a positive whole number, not 0",
        ),
        (
            "scratch: [{size_gb: 1, mount_path: tmp}]",
            "compute.train.scratch[0].mount_path must be an absolute path, not 'tmp'",
        ),
        (
            "scratch: [{size_gb: 1}, {size_gb: 2}]",
            "compute.train.scratch has 2 entries; gridctl supports one scratch space",
        ),
    ],
)
def test_wrong_types_in_train(tmp_path: Path, train: str, expected: str) -> None:
    assert error(write(tmp_path, f"compute:\n  train:\n    {train}\n")) == expected


def test_unknown_instance_type_names_the_key(tmp_path: Path) -> None:
    message = error(write(tmp_path, "compute: {train: {instance: g4dn.xlarg}}\n"))
    assert message.startswith(
        "compute.train.instance: unknown instance type 'g4dn.xlarg' (did you mean g4dn.xlarge?)"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: My_Run\n", "name: run name 'My_Run' contains 'M', 'R', '_'"),
        ("name: sweep-exp2\n", "name: run name 'sweep-exp2' must not end in -exp<digits>"),
        ("name: 7\n", "name must be a non-empty string, not 7"),
        ("description: [a]\n", "description must be a non-empty string, not ['a']"),
        ("compute: [a]\n", "compute must be a mapping, not ['a']"),
        ("compute: {train: 3}\n", "compute.train must be a mapping, not 3"),
        (
            "compute: {provider: {vendor: gcp}}\n",
            "compute.provider.vendor must be one of aws, local, not 'gcp'",
        ),
        (
            "compute: {provider: {region: 1}}\n",
            "compute.provider.region must be a non-empty string, not 1",
        ),
        (
            "hyper_params: {settings: {strategy: bayes}}\n",
            "hyper_params.settings.strategy must be one of grid_search, random_search, none, "
            "not 'bayes'",
        ),
        (
            "hyper_params: {settings: {trials: 0}}\n",
            "hyper_params.settings.trials must be a positive whole number, not 0",
        ),
        (
            "hyper_params: {settings: {seed: -1}}\n",
            "hyper_params.settings.seed must be a whole number >= 0, not -1",
        ),
        (
            "hyper_params: {settings: {seed: '1'}}\n",
            "hyper_params.settings.seed must be a whole number >= 0, not '1'",
        ),
        (
            "hyper_params: {params: [lr]}\n",
            "hyper_params.params must be a mapping of flag: value, not ['lr']",
        ),
        (
            "hyper_params: {params: {lr: null}}\n",
            "hyper_params.params.lr has no value; give one, or remove the flag",
        ),
        (
            "hyper_params: {params: {lr: {a: 1}}}\n",
            "hyper_params.params.lr must be a string, number, boolean or list of those, not "
            "{'a': 1}",
        ),
        ("hyper_params: {params: {lr: []}}\n", "hyper_params.params.lr is an empty list"),
        (
            "hyper_params: {params: {lr: [[1]]}}\n",
            "hyper_params.params.lr may list only strings, numbers and booleans, not [1]",
        ),
        (
            "hyper_params: {params: {lr: 2020-01-01}}\n",
            "hyper_params.params.lr must be a string, number, boolean or list of those, not "
            "datetime.date(2020, 1, 1)",
        ),
        (
            "hyper_params: {params: {'--': 1}}\n",
            "hyper_params.params has '--', which is not a valid flag name",
        ),
        (
            "hyper_params: {params: {'a b': 1}}\n",
            "hyper_params.params has 'a b', which is not a valid flag name",
        ),
        (
            "hyper_params: {params: {'lr=1': 1}}\n",
            "hyper_params.params has 'lr=1', which is not a valid flag name",
        ),
        (
            "hyper_params: {params: {1: 1}}\n",
            "hyper_params.params has 1, which is not a valid flag name",
        ),
        (
            "hyper_params: {params: {lr: 1, --lr: 2}}\n",
            "hyper_params.params sets the flag lr twice",
        ),
    ],
)
def test_wrong_types_elsewhere(tmp_path: Path, text: str, expected: str) -> None:
    assert error(write(tmp_path, text)).startswith(expected)


@pytest.mark.parametrize(
    ("train", "expected"),
    [
        (
            "actions: {on_image_build: [pip install tqdm]}",
            "compute.train.actions is not supported yet",
        ),
        ("scale_down_seconds: 1800", "compute.train.scale_down_seconds is not supported yet"),
        ("distributed: true", "compute.train.distributed is not supported yet"),
        ("dockerfile: Dockerfile", "compute.train.dockerfile is not supported yet"),
        (
            "dependency_file_info: {package_manager: conda}",
            "compute.train.dependency_file_info.package_manager must be one of pip, uv",
        ),
    ],
)
def test_grid_features_not_implemented_are_refused(
    tmp_path: Path, train: str, expected: str
) -> None:
    assert error(write(tmp_path, f"compute:\n  train:\n    {train}\n")).startswith(expected)


@pytest.mark.parametrize(("text", "expected"), [("0", None), ("1", 1), ("2", 2), ("64", 64)])
def test_nodes_are_read_and_grids_zero_asks_for_nothing(
    tmp_path: Path, text: str, expected: int | None
) -> None:
    """Grid's own example files say ``nodes: 0`` for a run that is not multi-node."""
    values = load_config(write(tmp_path, f"compute: {{train: {{nodes: {text}}}}}\n")).values
    assert values.get("nodes") == expected
    assert ("nodes" in values) == (expected is not None)


def test_provider_cluster_is_refused(tmp_path: Path) -> None:
    message = error(write(tmp_path, "compute: {provider: {cluster: prod-1}}\n"))
    assert message.startswith("compute.provider.cluster is not supported yet")


def test_missing_file(tmp_path: Path) -> None:
    assert error(tmp_path / "nope.yml") == "no such file"


def test_directory(tmp_path: Path) -> None:
    assert error(tmp_path) == "is a directory, not a YAML file"


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (PermissionError(13, "Permission denied"), "cannot read it (permission denied)"),
        (OSError(5, "Input/output error"), "cannot read it (Input/output error)"),
    ],
)
def test_unreadable_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exc: OSError, expected: str
) -> None:
    path = write(tmp_path, "{}\n")

    def refuse(self: Path, *args: object, **kwargs: object) -> str:
        raise exc

    monkeypatch.setattr(Path, "read_text", refuse)
    assert error(path) == expected


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "config.yml"
    path.write_bytes(b"name: caf\xe9\n")
    assert error(path) == "not UTF-8 text"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("compute:\n  train:\n    cpus: 1\n   gpus: 2\n", r"not valid YAML at line 4, column 4: "),
        ("name: [a, b\n", r"not valid YAML at line 2, column 1: "),
        ("a: b: c\n", r"not valid YAML at line 1, column 5: mapping values are not allowed here"),
        (
            "a: 1\n---\nb: 2\n",
            r"not valid YAML at line 2, column 1: "
            r"expected a single document in the stream but found another document",
        ),
        ("a: *nothing\n", r"not valid YAML at line 1, column 4: found undefined alias"),
        ("a: !!python/object:os.system x\n", r"not valid YAML at line 1, column 4: "),
        ("a: \x07\n", r"not valid YAML: "),
    ],
)
def test_invalid_yaml_mentions_the_line(tmp_path: Path, text: str, expected: str) -> None:
    assert re.match(expected, error(write(tmp_path, text)))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "the file is empty"),
        ("# only a comment\n", "the file is empty"),
        (
            "- a\n- b\n",
            "expected a mapping with compute and hyper_params sections, found ['a', 'b']",
        ),
        ("hello\n", "expected a mapping with compute and hyper_params sections, found 'hello'"),
    ],
)
def test_not_a_mapping(tmp_path: Path, text: str, expected: str) -> None:
    assert error(write(tmp_path, text)) == expected


def test_merge_params_appends_missing_flags() -> None:
    params = (("lr", "uniform(0, 1, 3)"), ("layers", "[2, 4]"))
    assert merge_params(["--epochs", "3"], params) == [
        "--epochs",
        "3",
        "--lr",
        "uniform(0, 1, 3)",
        "--layers",
        "[2, 4]",
    ]


@pytest.mark.parametrize(
    "script_args",
    [["--lr", "0.1"], ["--lr=0.1"], ["--lr", "0.1", "--lr", "0.2"], ["--data", "x", "--lr=[1,2]"]],
)
def test_merge_params_command_line_wins(script_args: list[str]) -> None:
    assert merge_params(script_args, (("lr", "0.5"),)) == script_args


def test_merge_params_matches_whole_flag_names() -> None:
    assert merge_params(["--lr_decay", "0.9", "--lrx=1"], (("lr", "0.5"),)) == [
        "--lr_decay",
        "0.9",
        "--lrx=1",
        "--lr",
        "0.5",
    ]


def test_merge_params_does_not_mutate_its_input() -> None:
    args = ["--a", "1"]
    merge_params(args, (("b", "2"),))
    assert args == ["--a", "1"]


def test_importing_these_modules_does_not_import_yaml() -> None:
    modules = "gridctl.cli.config, gridctl.cli.machines, gridctl.cli.names"
    code = f"import sys, {modules}; print('yaml' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
