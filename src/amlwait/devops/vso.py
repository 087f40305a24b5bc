"""Azure Pipelines logging commands, escaped as the agent expects.

One command per stdout line: ``##vso[area.action key=value;key=value]message``. In
property values ``%`` → ``%AZP25``, ``;`` → ``%3B``, ``\\r`` → ``%0D``, ``\\n`` → ``%0A``,
``]`` → ``%5D``; in the message only ``%``, ``\\r`` and ``\\n`` are escaped. Formatting
commands (``##[section]``, ``##[group]``…) take a message only.

The agent reads a command from the *first* ``##vso[`` anywhere in a line (its
``Command.TryParse`` looks the prefix up with ``IndexOf``), and a formatting command from a
line that starts with ``##[``. So a value from outside (a status, a reason, a workspace or
job name from ARM or a manifest) is safe in stdout only when it cannot end the line and
cannot carry either prefix: inside a ``##vso[`` command this module's escaping does it
(the agent takes the first prefix, which is ours); in a formatting command and in any
other line every ``##vso[`` of the text is broken up as well (:func:`inert`).
"""

from __future__ import annotations

from collections.abc import Mapping

COMMAND_PREFIX = "##vso["
FORMAT_PREFIX = "##["


def inert(text: str) -> str:
    """``text`` as one plain log line the agent reads no command from: line breaks shown as
    ``\\n`` (``\\r``), every ``##vso[`` written ``##vso [``, a leading ``##[`` written
    ``# #[``. Nothing else changes (a plain line is not unescaped, so ``%`` stays)."""
    line = text.replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\r")
    line = line.replace(COMMAND_PREFIX, "##vso [")
    return "# #[" + line[len(FORMAT_PREFIX) :] if line.startswith(FORMAT_PREFIX) else line


def escape_message(text: str) -> str:
    return text.replace("%", "%AZP25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    return (
        text.replace("%", "%AZP25")
        .replace(";", "%3B")
        .replace("\r", "%0D")
        .replace("\n", "%0A")
        .replace("]", "%5D")
    )


def command(
    name: str,
    properties: Mapping[str, str | None] | None = None,
    message: str = "",
    *,
    trailing_semicolon: bool = False,
) -> str:
    """``##vso[name k=v;…]message`` with every part escaped; ``None`` values are left out."""
    props = ";".join(
        f"{key}={escape_property(value)}"
        for key, value in (properties or {}).items()
        if value is not None
    )
    end = ";" if trailing_semicolon else ""
    head = f"##vso[{name} {props}{end}]" if props else f"##vso[{name}]"
    return head + escape_message(message)


def set_variable(name: str, value: str, *, output: bool = True, secret: bool = False) -> str:
    properties: dict[str, str | None] = {"variable": name}
    if output:
        properties["isoutput"] = "true"
    if secret:
        properties["issecret"] = "true"
    return command("task.setvariable", properties, value)


def log_issue(kind: str, message: str, *, code: str | None = None) -> str:
    return command("task.logissue", {"type": kind, "code": code}, message)


def set_progress(percent: int, text: str = "") -> str:
    value = str(max(0, min(100, percent)))
    return command("task.setprogress", {"value": value}, text, trailing_semicolon=True)


def upload_summary(path: str) -> str:
    return command("task.uploadsummary", None, path)


def formatting(kind: str, message: str) -> str:
    """``##[section]``, ``##[group]``, ``##[endgroup]``, ``##[warning]``, ``##[error]``."""
    return f"##[{kind}]" + escape_message(message).replace(COMMAND_PREFIX, "##vso [")
