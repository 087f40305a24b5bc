"""``amlwait render`` and ``amlwait matrix``: the command-line shells around
:mod:`amlwait.devops.pipelines` (reading the manifest, writing the files)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from amlwait.core.wording import count

if TYPE_CHECKING:
    from amlwait.core.manifest import Manifest
    from amlwait.devops.pipelines import RenderedFile


def _job_list(
    manifest: str | None,
    job_names: str | None,
    *,
    subscription: str | None,
    resource_group: str | None,
    workspace: str | None,
) -> Manifest | None:
    from amlwait.core.manifest import ConnectionDefaults, parse_manifest
    from amlwait.errors import InputError
    from amlwait.manifest_io import load_manifest

    if manifest and job_names:
        raise InputError("give either --manifest or --jobs, not both")
    if manifest:
        return load_manifest(
            manifest,
            subscription=subscription,
            resource_group=resource_group,
            workspace=workspace,
            arm_names=False,  # rendered as placeholders; the wait step checks them
        )
    if job_names is not None:
        names = [name.strip() for name in job_names.split(",")]
        text = json.dumps({"jobs": [name for name in names if name]})
        defaults = ConnectionDefaults(subscription, resource_group, workspace)
        return parse_manifest(text, "--jobs", defaults, arm_names=False)
    return None


def _write(path: Path, text: str) -> None:
    from amlwait.errors import InputError

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as error:
        raise InputError(f"{path}: cannot write ({error.strerror or error})") from None
    click.echo(f"wrote {path}", err=True)


def _emit(kind: str, files: list[RenderedFile], output: str | None) -> None:
    """The files on stdout (several as one YAML stream), or written under ``output``: a
    file (or into a directory) for one, a directory for several."""
    from amlwait.devops.pipelines import document_stream
    from amlwait.errors import InputError

    if output is None:
        sys.stdout.write(document_stream(files) if len(files) > 1 else files[0].text)
        return
    target = Path(output)
    if len(files) > 1:
        if target.exists() and not target.is_dir():
            raise InputError(
                f"--output {output}: render {kind} writes {count(len(files), 'file')}; "
                "give a directory"
            )
        for file in files:
            _write(target / file.path, file.text)
    else:
        if target.is_dir():
            target = target / files[0].path
        _write(target, files[0].text)


@click.command()
@click.argument("kind", metavar="KIND")
@click.option("--manifest", metavar="FILE", help="The job list, as training_jobs.json.")
@click.option("--jobs", "job_names", metavar="N1,N2,…", help="The job list, comma-separated.")
@click.option(
    "--service-connection",
    metavar="NAME",
    help="Azure Resource Manager service connection; for `service`, the Generic connection "
    "to the amlwait service.",
)
@click.option("--subscription", metavar="ID", help="The jobs' subscription.")
@click.option("--resource-group", "-g", metavar="NAME", help="The jobs' resource group.")
@click.option("--workspace-name", "-w", metavar="NAME", help="The jobs' Azure ML workspace.")
@click.option(
    "--timeout-minutes",
    type=int,
    metavar="N",
    help="Job timeout (default: 2880 for server jobs, 360 hosted / 2880 self-hosted agents, "
    "2910 for service).",
)
@click.option(
    "--agent",
    type=click.Choice(["hosted", "self-hosted"]),
    default="hosted",
    show_default=True,
    help="agent: Microsoft-hosted (360 min at most) or self-hosted.",
)
@click.option("--pool", metavar="NAME", help="agent --agent self-hosted: the pool [Default].")
@click.option(
    "--max-legs",
    type=click.IntRange(1, 256),
    default=256,
    show_default=True,
    help="Legs per matrix job.",
)
@click.option(
    "--max-chunks",
    type=click.IntRange(1, 100),
    default=4,
    show_default=True,
    help="webhook-matrix: waiting server jobs (capacity = chunks × legs).",
)
@click.option(
    "--install",
    metavar="SPEC",
    help="agent, webhook-matrix: what the agent step pip-installs, pinned: amlwait==X.Y.Z "
    "(default: this amlwait's version) with --feed or --index-url, a wheel path "
    "(…/amlwait-X.Y.Z-….whl; under $(Pipeline.Workspace)/ARTIFACT/ it is downloaded), "
    "or git+https://HOST/REPO@TAG.",
)
@click.option(
    "--feed",
    metavar="NAME",
    help="Azure Artifacts feed (or PROJECT/FEED) holding amlwait: PipAuthenticate@1 makes "
    "it pip's only index.",
)
@click.option("--index-url", metavar="URL", help="Another https package index holding amlwait.")
@click.option("--amlwait-spec", "legacy_spec", metavar="SPEC", hidden=True)
@click.option(
    "--training-outputs",
    default="Training.Submit.meta",
    show_default=True,
    metavar="STAGE.JOB.STEP",
    help="service, pipeline: the step that set the output variables batchTag and jobCount "
    "(pipeline: pipelineJob).",
)
@click.option(
    "--no-report",
    is_flag=True,
    help="pipeline: leave out the agent job running `amlwait report` after the wait.",
)
@click.option(
    "--output",
    "-o",
    metavar="PATH",
    help="Write to PATH (template: a directory receiving two files) instead of stdout.",
)
def render(
    kind: str,
    manifest: str | None,
    job_names: str | None,
    service_connection: str | None,
    subscription: str | None,
    resource_group: str | None,
    workspace_name: str | None,
    timeout_minutes: int | None,
    agent: str,
    pool: str | None,
    max_legs: int,
    max_chunks: int,
    install: str | None,
    feed: str | None,
    index_url: str | None,
    legacy_spec: str | None,
    training_outputs: str,
    no_report: bool,
    output: str | None,
) -> int:
    """Print pipeline YAML that waits for Azure ML jobs; KIND is one of
    matrix · template · agent · webhook-matrix · service · pipeline.

    \b
    matrix          AzureMLJobWaitTask@1 legs of a server-job matrix (static list)
    template        templates/wait-for-jobs.yml and a file using it (static list)
    agent           amlwait wait on an agent, with test results and reports
    webhook-matrix  agentless, list read at run time (experimental)
    service         one server job calling the amlwait waiting service
    pipeline        AzureMLJobWaitTask@1 on the pipeline job of submit --as-pipeline

    template prints two YAML documents, each after a `# file:` line; with --output DIR
    it writes DIR/templates/wait-for-jobs.yml and DIR/wait-for-training.yml.
    """
    from amlwait.devops.pipelines import RenderOptions, route_for
    from amlwait.errors import InputError

    route = route_for(kind)
    if legacy_spec is not None and install is not None:
        raise InputError("--amlwait-spec is the old name of --install: give one of them")
    options = RenderOptions(
        service_connection=service_connection or "",
        subscription=subscription,
        resource_group=resource_group,
        workspace=workspace_name,
        timeout_minutes=timeout_minutes,
        agent=agent,
        pool=pool,
        max_legs=max_legs,
        max_chunks=max_chunks,
        install=install if install is not None else legacy_spec,
        feed=feed,
        index_url=index_url,
        training_outputs=training_outputs,
        report=not no_report,
    )
    # Said before the job list is read: a list the route refuses is not parsed at all.
    route.check_connection(options)
    route.check_install(options)
    route.check_job_list(manifest is not None or job_names is not None)
    jobs = _job_list(
        manifest,
        job_names,
        subscription=subscription or route.connection_subscription,
        resource_group=resource_group,
        workspace=workspace_name,
    )
    files = route.render(
        options, None if jobs is None else jobs.jobs, None if jobs is None else jobs.tag
    )
    _emit(kind, files, output)
    return 0


@click.command()
@click.argument("manifest", metavar="MANIFEST")
@click.option(
    "--variable",
    default="legs",
    show_default=True,
    metavar="NAME",
    help="Output variables NAME_0, NAME_1, … and NAME_count.",
)
@click.option(
    "--max-legs",
    type=click.IntRange(1, 256),
    default=256,
    show_default=True,
    help="Legs per matrix.",
)
@click.option(
    "--max-chunks",
    type=click.IntRange(1, None),
    metavar="N",
    help="Fail (exit 2) when the jobs need more than N matrices.",
)
@click.option(
    "--subscription",
    envvar="AZURE_SUBSCRIPTION_ID",
    metavar="ID",
    help="Default subscription (env AZURE_SUBSCRIPTION_ID).",
)
@click.option(
    "--resource-group",
    "-g",
    envvar="AZURE_RESOURCE_GROUP",
    metavar="NAME",
    help="Default resource group (env AZURE_RESOURCE_GROUP).",
)
@click.option(
    "--workspace-name",
    "-w",
    envvar="AZUREML_WORKSPACE_NAME",
    metavar="NAME",
    help="Default workspace (env AZUREML_WORKSPACE_NAME).",
)
def matrix(
    manifest: str,
    variable: str,
    max_legs: int,
    max_chunks: int | None,
    subscription: str | None,
    resource_group: str | None,
    workspace_name: str | None,
) -> int:
    """Print the jobs of MANIFEST as matrix output variables for a later server job.

    \b
    ##vso[task.setvariable variable=legs_0;isoutput=true]{"LEG": {"jobName": …}, …}
    … one line per matrix of at most --max-legs legs, then legs_count.
    Each leg holds jobName, subscription, resourceGroup and workspace.
    """
    from amlwait.devops.pipelines import matrix_variable_lines
    from amlwait.manifest_io import load_manifest

    loaded = load_manifest(
        manifest,
        subscription=subscription,
        resource_group=resource_group,
        workspace=workspace_name,
        arm_names=False,  # written into pipeline variables; the wait step checks them
    )
    lines = matrix_variable_lines(
        loaded.jobs, variable=variable, max_legs=max_legs, max_chunks=max_chunks
    )
    for line in lines:
        click.echo(line)
    click.echo(
        f"{count(len(loaded.jobs), 'job')} in {count(len(lines) - 1, 'matrix')} of at most "
        f"{count(max_legs, 'leg')}",
        err=True,
    )
    return 0


__all__ = ["matrix", "render"]
