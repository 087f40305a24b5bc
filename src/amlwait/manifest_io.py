"""Reading a manifest from a file or standard input."""

from __future__ import annotations

import sys
from pathlib import Path

from amlwait.core.manifest import ConnectionDefaults, Manifest, parse_manifest
from amlwait.errors import ManifestError


def load_manifest(
    path: str | Path,
    *,
    subscription: str | None = None,
    resource_group: str | None = None,
    workspace: str | None = None,
    arm_names: bool = True,
) -> Manifest:
    """Read and validate the manifest at ``path`` (``-`` for standard input); ``arm_names``
    as for :func:`~amlwait.core.manifest.parse_manifest`."""
    defaults = ConnectionDefaults(subscription, resource_group, workspace)
    if str(path) == "-":
        return parse_manifest(sys.stdin.read(), "<stdin>", defaults, arm_names=arm_names)
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError(
            f"{file}: no such manifest file; give the path of training_jobs.json"
        ) from None
    except IsADirectoryError:
        raise ManifestError(f"{file}: is a directory, not a manifest file") from None
    except PermissionError:
        raise ManifestError(f"{file}: cannot be read (permission denied)") from None
    except UnicodeDecodeError:
        raise ManifestError(f"{file}: is not UTF-8 text; a manifest is a JSON file") from None
    return parse_manifest(text, str(file), defaults, arm_names=arm_names)
