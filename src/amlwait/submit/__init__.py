"""``amlwait submit``: one Azure ML training job per plant and circuit.

::

    circuits.py   the circuits file (YAML, errors with file:line: key)
    template.py   placeholders in the job template: {plant}, {date:%Y_%m_%d}, …
    arm_job.py    command job YAML → ARM job properties (no azure-ai-ml)
    code_upload.py  local code folders → registered code assets, once per batch
    plan.py       names, tags, the batch tag; everything checked before a request
    submitter.py  idempotent, concurrent, bounded submission over a job source
    command.py    the command's flow: report lines, manifest, exit code
    cli.py        the click command (attached to ``amlwait`` by :mod:`amlwait.cli`)

The core knows nothing of this package; it depends on the core, the ARM client and the
Azure DevOps rendering, never the reverse.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "JobSpecError": "amlwait.submit.arm_job",
    "command_job_properties": "amlwait.submit.arm_job",
    "Circuit": "amlwait.submit.circuits",
    "CircuitsFile": "amlwait.submit.circuits",
    "load_circuits": "amlwait.submit.circuits",
    "parse_circuits": "amlwait.submit.circuits",
    "BATCH_TAG_PREFIX": "amlwait.submit.plan",
    "DEFAULT_NAME_PATTERN": "amlwait.submit.plan",
    "Batch": "amlwait.submit.plan",
    "PlannedJob": "amlwait.submit.plan",
    "batch_tag": "amlwait.submit.plan",
    "plan_batch": "amlwait.submit.plan",
    "CircuitResult": "amlwait.submit.submitter",
    "Outcome": "amlwait.submit.submitter",
    "Submitter": "amlwait.submit.submitter",
    "JobTemplate": "amlwait.submit.template",
    "substitute": "amlwait.submit.template",
}

__all__ = [
    "BATCH_TAG_PREFIX",
    "DEFAULT_NAME_PATTERN",
    "Batch",
    "Circuit",
    "CircuitResult",
    "CircuitsFile",
    "JobSpecError",
    "JobTemplate",
    "Outcome",
    "PlannedJob",
    "Submitter",
    "batch_tag",
    "command_job_properties",
    "load_circuits",
    "parse_circuits",
    "plan_batch",
    "substitute",
]


def __getattr__(name: str) -> Any:
    # Lazy, so that ``amlwait --help`` does not import YAML and the submit machinery.
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'amlwait.submit' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
