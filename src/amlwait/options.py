"""Command-line option types and groups shared by amlwait's commands."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


class Duration(click.ParamType):  # type: ignore[type-arg]
    name = "DUR"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, (int, float)):
            return float(value)
        from amlwait.core.duration import parse_duration

        try:
            return parse_duration(str(value))
        except ValueError as error:
            self.fail(str(error), param, ctx)


DURATION = Duration()


def connection_options(command: F) -> F:
    """The flags that say where the jobs live, shared by every command that talks to ARM."""
    options = [
        click.option(
            "--subscription",
            envvar="AZURE_SUBSCRIPTION_ID",
            metavar="ID",
            help="Azure subscription id (env AZURE_SUBSCRIPTION_ID).",
        ),
        click.option(
            "--resource-group",
            "-g",
            envvar="AZURE_RESOURCE_GROUP",
            metavar="NAME",
            help="Resource group (env AZURE_RESOURCE_GROUP).",
        ),
        click.option(
            "--workspace-name",
            "-w",
            envvar="AZUREML_WORKSPACE_NAME",
            metavar="NAME",
            help="Azure ML workspace (env AZUREML_WORKSPACE_NAME).",
        ),
        click.option(
            "--arm-endpoint",
            envvar="AMLWAIT_ARM_ENDPOINT",
            metavar="URL",
            default="https://management.azure.com",
            show_default=True,
            help="ARM endpoint (env AMLWAIT_ARM_ENDPOINT); the local workspace's URL "
            "to work offline.",
        ),
        click.option(
            "--api-version",
            default="2025-12-01",
            show_default=True,
            metavar="V",
            help="ARM api-version of the Azure ML jobs API.",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command
