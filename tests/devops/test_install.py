"""``render --install``: only pinned, explicit sources of amlwait reach a pipeline."""

from __future__ import annotations

import pytest

from amlwait import __version__
from amlwait.devops.pipelines.install import DEFAULT_INSTALL, install_steps, parse_install
from amlwait.errors import InputError

WHEEL = "$(Pipeline.Workspace)/amlwait-wheel/amlwait-0.1.0-py3-none-any.whl"


def script_of(steps: list[dict]) -> str:
    return next(step["script"] for step in steps if "script" in step)


def test_the_default_is_the_rendering_version_pinned_from_the_named_feed() -> None:
    source = parse_install(None, feed="amlwait")
    steps = install_steps(source)

    assert f"amlwait=={__version__}" == DEFAULT_INSTALL
    assert steps[0] == {
        "task": "PipAuthenticate@1",
        "displayName": "Let pip read the amlwait feed (its only index)",
        "inputs": {"artifactFeeds": "amlwait"},
    }
    assert f"pip install --quiet amlwait=={__version__}\n" in script_of(steps)


def test_an_index_url_is_passed_to_pip() -> None:
    steps = install_steps(parse_install("amlwait==1.2.3", index_url="https://pkgs.example/simple/"))
    assert [step.get("task") for step in steps] == [None]
    assert "pip install --quiet --index-url https://pkgs.example/simple/ amlwait==1.2.3" in (
        script_of(steps)
    )


def test_a_wheel_in_a_pipeline_artifact_is_downloaded_first() -> None:
    steps = install_steps(parse_install(WHEEL))
    assert steps[0]["task"] == "DownloadPipelineArtifact@2"
    assert steps[0]["inputs"]["artifactName"] == "amlwait-wheel"
    assert f'pip install --quiet "{WHEEL}"' in script_of(steps)


def test_a_git_url_pinned_to_a_tag_is_installed_as_written() -> None:
    url = "git+https://dev.azure.com/org/proj/_git/amlwait@v0.1.0"
    assert f"pip install --quiet {url}\n" in script_of(install_steps(parse_install(url)))


@pytest.mark.parametrize(
    ("spec", "why"),
    [
        ("amlwait", "not pinned"),
        ("amlwait>=1", "not pinned"),
        ("amlwait==1.*", "not pinned"),
        ("amlwait~=0.1", "not pinned"),
        ("amlwiat==0.1.0", "this installs amlwiat, not amlwait"),
        ("git+https://github.com/org/amlwait", "must end in @TAG"),
        ("git+ssh://git@github.com/org/amlwait@v1", "only git+https"),
        ("dist/amlwait.whl", "amlwait-X.Y.Z-"),
        ("dist/amlwait-0.1.0-py3-none-any.whl; rm -rf /", "a wheel path holds only"),
    ],
)
def test_an_unpinned_or_foreign_spec_is_refused_with_the_fix(spec: str, why: str) -> None:
    with pytest.raises(InputError) as refused:
        parse_install(spec, feed="amlwait")
    message = str(refused.value)
    assert why in message
    assert "--feed NAME" in message and "\n" not in message


def test_a_pinned_name_without_an_index_is_refused() -> None:
    with pytest.raises(InputError, match="amlwait is not on PyPI"):
        parse_install("amlwait==0.1.0")


def test_an_index_url_with_credentials_is_refused() -> None:
    with pytest.raises(InputError, match="credentials"):
        parse_install(None, index_url="https://user:pat@pkgs.example/simple/")
    with pytest.raises(InputError, match="https"):
        parse_install(None, index_url="http://pkgs.example/simple/")
