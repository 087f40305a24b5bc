from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from amlwait.submit.arm_job import JobSpecError, command_job_properties
from tests.helpers import WS


def convert(tmp_path: Path, text: str) -> dict[str, Any]:
    return command_job_properties(yaml.safe_load(text), base_dir=tmp_path, workspace=WS)


def test_a_full_command_job_becomes_arm_properties(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    properties = convert(
        tmp_path,
        """\
        $schema: https://azuremlschemas.azureedge.net/latest/commandJob.schema.json
        type: command
        command: python train.py --data ${{inputs.data}} --epochs ${{inputs.epochs}}
        code: src
        environment: azureml:train-env:3
        compute: azureml:cpu-cluster
        inputs:
          epochs: 10
          rate: 0.5
          data: {type: uri_folder, path: ./data, mode: ro_mount}
          table: {type: uri_file, path: azureml://datastores/ws/paths/t.csv}
        outputs:
          model: {type: mlflow_model, mode: upload}
          report:
        environment_variables: {THREADS: 4}
        experiment_name: training
        display_name: PLANT001 CIRCUIT01
        description: one circuit
        tags: {owner: data-team}
        resources: {instance_count: 2, instance_type: Standard_DS3_v2}
        limits: {timeout: 3600}
        """.replace("        ", ""),
    )
    assert properties == {
        "jobType": "Command",
        "command": "python train.py --data ${{inputs.data}} --epochs ${{inputs.epochs}}",
        "codeId": (tmp_path / "src").resolve().as_uri(),
        "environmentId": "azureml:train-env:3",
        "computeId": f"{WS.arm_path}/computes/cpu-cluster",
        "inputs": {
            "epochs": {"jobInputType": "literal", "value": "10"},
            "rate": {"jobInputType": "literal", "value": "0.5"},
            "data": {
                "jobInputType": "uri_folder",
                "uri": (tmp_path / "data").resolve().as_uri(),
                "mode": "ReadOnlyMount",
            },
            "table": {"jobInputType": "uri_file", "uri": "azureml://datastores/ws/paths/t.csv"},
        },
        "outputs": {
            "model": {"jobOutputType": "mlflow_model", "mode": "Upload"},
            "report": {"jobOutputType": "uri_folder"},
        },
        "environmentVariables": {"THREADS": "4"},
        "experimentName": "training",
        "displayName": "PLANT001 CIRCUIT01",
        "description": "one circuit",
        "tags": {"owner": "data-team"},
        "resources": {"instanceCount": 2, "instanceType": "Standard_DS3_v2"},
        "limits": {"jobLimitsType": "Command", "timeout": "PT3600S"},
    }
    assert properties["codeId"].startswith("file:///")


def test_asset_ids_pass_through(tmp_path: Path) -> None:
    properties = convert(
        tmp_path,
        "command: run\ncode: azureml:train-code:1\nenvironment: azureml:env@latest\n"
        f"compute: {WS.arm_path}/computes/gpu\n",
    )
    assert properties["codeId"] == "azureml:train-code:1"
    assert properties["environmentId"] == "azureml:env@latest"
    assert properties["computeId"] == f"{WS.arm_path}/computes/gpu"


@pytest.mark.parametrize(
    ("text", "path", "message"),
    [
        (
            "command: run\nenvironment: {image: python:3.11}\n",
            ("environment",),
            "register it",
        ),
        ("command: run\nenvironment: my-env:1\n", ("environment",), "registered environment"),
        ("command: run\n", ("environment",), "needs an environment"),
        ("type: pipeline\ncommand: run\nenvironment: azureml:e:1\n", ("type",), "command jobs"),
        ("environment: azureml:e:1\n", ("command",), "needs a command"),
        ("command: run\nenvironment: azureml:e:1\ncode: missing\n", ("code",), "does not exist"),
        ("command: run\nenvironment: azureml:e:1\nname: x\n", ("name",), "--name-pattern"),
        ("command: run\nenvironment: azureml:e:1\ndistribution: {}\n", ("distribution",), ""),
        (
            "command: run\nenvironment: azureml:e:1\ninputs: {d: {type: uri_folder, path: p, "
            "mode: mount}}\n",
            ("inputs", "d", "mode"),
            "ro_mount",
        ),
    ],
)
def test_what_cannot_be_converted_is_an_error_with_its_key(
    tmp_path: Path, text: str, path: tuple[str, ...], message: str
) -> None:
    with pytest.raises(JobSpecError) as caught:
        convert(tmp_path, text)
    assert caught.value.path == path
    assert message in str(caught.value)
