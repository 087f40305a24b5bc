"""The benchmark harness: every waiting strategy against one simulated workspace.

``python -m bench`` (see ``docs/benchmarks.md``). Each strategy runs in its own child
process (so its CPU time and peak RSS are its own), reading over real HTTP on loopback
from a :class:`~amlwait.workspace.ScriptedWorkspace` that the child hosts in a thread
with the same seeded scenario, on a shared virtual clock.

``python -m bench.soak`` plays the same scenario, compressed, on a real clock against a
real ``amlwait serve`` process, with the workspace and Azure DevOps in processes of their
own, and compares the service's CPU per 1,000 status changes with the virtual clock's.
"""
