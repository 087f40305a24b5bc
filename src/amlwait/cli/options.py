"""Command-line option types and groups shared by amlwait's commands, and what they build.

The flags that say where the jobs live (:func:`connection_options`) build a manifest
(:func:`manifest_from_flags`) and an ARM job source (:func:`arm_source_from_flags`); the
polling flags of ``wait`` and ``serve`` build their :class:`PollPolicy` and
:class:`RequestBudget` (:func:`polling_from_flags`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import click

from amlwait.core.budget import RequestBudget
from amlwait.core.policy import PollPolicy

if TYPE_CHECKING:
    from amlwait.azureml.arm import ArmJobSource
    from amlwait.core.manifest import Manifest

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


def polling_from_flags(options: Mapping[str, Any]) -> tuple[PollPolicy, RequestBudget]:
    """The poll policy and request budget of ``--poll-interval``, ``--max-poll-interval``,
    ``--not-found-grace``, ``--not-responding-grace`` and ``--max-requests-per-second``
    (``rate``; the budget's burst is ``max(1, 2 * rate)``). Raises ``ValueError`` naming
    what is wrong; each command says it its own way."""
    policy = PollPolicy(
        poll_interval=options["poll_interval"],
        max_poll_interval=options["max_poll_interval"],
        not_found_grace=options["not_found_grace"],
        suspect_grace=options["not_responding_grace"],
    )
    rate = float(options["max_requests_per_second"])
    return policy, RequestBudget(rate=rate, burst=max(1.0, 2 * rate))


def manifest_from_flags(path: str, options: Mapping[str, Any]) -> Manifest:
    """The manifest at ``path`` (or ``-``), its jobs' workspace defaulting to the flags'."""
    from amlwait.manifest_io import load_manifest

    return load_manifest(
        path,
        subscription=options.get("subscription"),
        resource_group=options.get("resource_group"),
        workspace=options.get("workspace_name"),
    )


def arm_source_from_flags(
    options: Mapping[str, Any],
    budget: RequestBudget | None = None,
    on_trouble: Callable[[str], None] | None = None,
) -> ArmJobSource:
    """An ARM job source at ``--arm-endpoint`` speaking ``--api-version``; its retrying /
    recovered lines go to ``on_trouble`` (default: printed on stdout)."""
    from amlwait.azureml.arm import ArmJobSource

    return ArmJobSource(
        endpoint=options["arm_endpoint"],
        api_version=options["api_version"],
        budget=budget,
        on_trouble=on_trouble or _say,
    )


def _say(line: str) -> None:
    print(line, flush=True)
