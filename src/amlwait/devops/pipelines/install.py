"""Where a rendered agent step installs amlwait from: always an explicit, pinned source.

amlwait is not published on PyPI. A step running ``pip install amlwait`` fails today, and
would install whoever registers that name tomorrow (dependency confusion); even a pinned
``amlwait==X.Y.Z`` resolved against PyPI would. So ``amlwait render --install SPEC``
accepts only these forms, and refuses anything else with one line (exit 2):

- ``amlwait==X.Y.Z`` (extras allowed: ``amlwait[postgres]==X.Y.Z``; the default is the
  rendering amlwait's own version) **from a private index**, which must then be named:

  - ``--feed NAME``: an Azure Artifacts feed (``PROJECT/NAME`` for a project-scoped one).
    The step is preceded by ``PipAuthenticate@1`` with ``artifactFeeds: NAME``, which
    makes the feed pip's primary index (``onlyAddExtraIndex`` left false), so PyPI is not
    consulted for amlwait; the feed reaches PyPI's packages (httpx, …) through its
    upstream source.
  - ``--index-url URL``: any other https index; rendered as ``pip install --index-url
    URL``. A URL carrying credentials (``user:pass@``) is refused: it would sit in YAML.

- a wheel file ``…/amlwait-X.Y.Z-….whl`` (the version is in the file name). A path under
  ``$(Pipeline.Workspace)/ARTIFACT/`` is a pipeline artifact: the step is preceded by
  ``DownloadPipelineArtifact@2`` of ``ARTIFACT``. Other paths are used as written (e.g. in
  the checkout). Its dependencies come from PyPI, or from ``--feed``/``--index-url``.
- a VCS URL ``git+https://HOST/PATH@REF`` with ``REF`` a tag or commit (a branch moves:
  name a tag). ``git+ssh`` and ``git+http`` are refused (a key, or no integrity).

An unpinned name (``amlwait``, ``amlwait>=1``, ``amlwait==1.*``) or another package is
refused. :func:`parse_install` decides; :func:`install_steps` writes the steps.

Only routes with an agent job install anything (``agent``, ``webhook-matrix``); the others
refuse ``--install``/``--feed``/``--index-url`` rather than ignore them.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from amlwait import __version__
from amlwait.devops.yamltext import Node
from amlwait.errors import InputError

DEFAULT_INSTALL = f"amlwait=={__version__}"
VENV = "$(Agent.TempDirectory)/amlwait-venv"
_PIPELINE_WORKSPACE = "$(Pipeline.Workspace)/"

_REQUIREMENT = re.compile(
    r"amlwait(?P<extras>\[[A-Za-z0-9_,.-]+\])?==(?P<version>[0-9]+(?:\.[0-9]+)*"
    r"(?:(?:a|b|rc|\.post|\.dev)[0-9]+)*(?:\+[A-Za-z0-9.]+)?)"
)
_WHEEL = re.compile(
    r"(?:\$\(Pipeline\.Workspace\)/)?(?:[A-Za-z0-9._+-]+/)*"
    r"amlwait-[0-9][A-Za-z0-9.+!]*-[A-Za-z0-9._+-]+\.whl"
)
_VCS = re.compile(r"git\+https://[^\s@/]+/[^\s@]+@(?P<ref>[A-Za-z0-9._/-]+)")
_FEED = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}(?:/[A-Za-z0-9][A-Za-z0-9._-]{0,63})?")
_FIX = (
    "give amlwait==X.Y.Z with --feed NAME or --index-url URL, a wheel path "
    "(…/amlwait-X.Y.Z-py3-none-any.whl) or git+https://HOST/REPO@TAG"
)


@dataclass(frozen=True)
class InstallSource:
    """A validated install source. ``kind`` is ``requirement``, ``wheel`` or ``vcs``;
    ``pip_argument`` is what ``pip install`` is given; ``artifact`` the pipeline artifact
    holding the wheel, if any."""

    kind: str
    pip_argument: str
    feed: str | None = None
    index_url: str | None = None
    artifact: str | None = None


def parse_install(
    spec: str | None, *, feed: str | None = None, index_url: str | None = None
) -> InstallSource:
    """Check ``--install SPEC`` (default :data:`DEFAULT_INSTALL`) with ``--feed`` and
    ``--index-url``; raise :class:`InputError` with the fix when it is not pinned."""
    text = (spec if spec is not None else DEFAULT_INSTALL).strip()
    if feed is not None and index_url is not None:
        raise InputError("--feed and --index-url name the same thing: give one of them")
    if feed is not None and not _FEED.fullmatch(feed):
        raise InputError(
            f"--feed {feed!r}: an Azure Artifacts feed name, or PROJECT/FEED for a "
            "project-scoped feed"
        )
    if index_url is not None:
        _check_index_url(index_url)
    if _REQUIREMENT.fullmatch(text):
        if feed is None and index_url is None:
            raise InputError(
                f"--install {text}: amlwait is not on PyPI (and a name there could be "
                "anyone's): say where it comes from with --feed NAME (Azure Artifacts) or "
                "--index-url URL, or install a wheel or git+https URL instead"
            )
        return InstallSource("requirement", text, feed=feed, index_url=index_url)
    if _WHEEL.fullmatch(text):
        artifact = None
        if text.startswith(_PIPELINE_WORKSPACE):
            rest = text[len(_PIPELINE_WORKSPACE) :]
            if "/" in rest:
                artifact = rest.split("/", 1)[0]
        return InstallSource("wheel", text, feed=feed, index_url=index_url, artifact=artifact)
    if _VCS.fullmatch(text):
        return InstallSource("vcs", text, feed=feed, index_url=index_url)
    raise InputError(f"--install {text!r}: {_problem(text)}; {_FIX}")


def _problem(text: str) -> str:
    if text.startswith("git+"):
        if not text.startswith("git+https://"):
            return "only git+https URLs are installed (ssh needs a key, http has no integrity)"
        return "a git URL must end in @TAG or @COMMIT, or it installs whatever the branch holds"
    if ".whl" in text:
        return (
            "a wheel path holds only letters, digits and ._/+- and ends in the file "
            "amlwait-X.Y.Z-….whl"
        )
    name = re.split(r"[\[<>=!~ ;@]", text, maxsplit=1)[0]
    if name and name.lower().replace("_", "-") != "amlwait":
        return f"this installs {name}, not amlwait"
    return "not pinned to one version: an unpinned name installs whatever an index offers"


def _check_index_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise InputError(f"--index-url {url!r}: give an https:// index URL")
    if parts.username or parts.password:
        raise InputError(
            "--index-url carries credentials, which would be written into the YAML: use "
            "--feed with PipAuthenticate@1, or a URL without user:password@"
        )


def install_steps_for(spec: str | None, feed: str | None, index_url: str | None) -> list[Node]:
    """:func:`install_steps` of :func:`parse_install` (an :class:`InputError` when the
    source is not pinned)."""
    return list(install_steps(parse_install(spec, feed=feed, index_url=index_url)))


def install_steps(source: InstallSource) -> list[dict[str, Any]]:
    """The steps that install amlwait into a virtual environment and put it on PATH."""
    steps: list[dict[str, Any]] = []
    if source.artifact is not None:
        steps.append(
            {
                "task": "DownloadPipelineArtifact@2",
                "displayName": f"Download the amlwait wheel ({source.artifact})",
                "inputs": {
                    "buildType": "current",
                    "artifactName": source.artifact,
                    "targetPath": f"{_PIPELINE_WORKSPACE}{source.artifact}",
                },
            }
        )
    if source.feed is not None:
        steps.append(
            {
                "task": "PipAuthenticate@1",
                "displayName": f"Let pip read the {source.feed} feed (its only index)",
                "inputs": {"artifactFeeds": source.feed},
            }
        )
    index = f" --index-url {shlex.quote(source.index_url)}" if source.index_url else ""
    steps.append(
        {
            # A virtual environment: works on hosted and self-hosted Linux agents alike and
            # never meets an "externally managed" system Python.
            "script": (
                f'python3 -m venv "{VENV}"\n'
                f'"{VENV}/bin/python" -m pip install --quiet --upgrade pip\n'
                f'"{VENV}/bin/python" -m pip install --quiet{index} '
                f"{_quote(source.pip_argument)}\n"
                f'echo "##vso[task.prependpath]{VENV}/bin"\n'
            ),
            "displayName": f"Install amlwait ({source.pip_argument})",
        }
    )
    return steps


def _quote(argument: str) -> str:
    """Quote for bash but keep ``$(Pipeline.Workspace)`` a macro the agent expands (a wheel
    path holds only ``[A-Za-z0-9._/+-]`` after it, so double quotes are enough)."""
    if argument.startswith(_PIPELINE_WORKSPACE):
        return f'"{argument}"'
    return shlex.quote(argument)
