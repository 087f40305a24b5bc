"""The JUnit, Markdown and HTML reports of a wait, built from scripted waits on a virtual clock.

JUnit is read back with an independent parser (junitparser); the HTML page is rendered by
headless Chromium and its screenshot checked pixel by pixel for one row per job.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from junitparser import Error, Failure, JUnitXml
from PIL import Image, ImageChops

from amlwait.core.clock import VirtualClock
from amlwait.core.jobs import WorkspaceRef
from amlwait.core.policy import PollPolicy
from amlwait.core.tracker import BatchOutcome
from amlwait.devops.html import (
    LABEL_LIMIT,
    PALETTE,
    PLOT_BACKGROUND,
    render_html,
    render_timeline,
    timeline_row,
)
from amlwait.devops.junit import render_junit
from amlwait.devops.summary import FULL_TABLE_LIMIT, KEPT_OTHERS, render_summary
from amlwait.result import WaitResult, run_time
from amlwait.testing import FakeJobSource
from amlwait.waiter import WaitOptions, wait_for_jobs

H = 3600.0
SVG = "{http://www.w3.org/2000/svg}"
ODD_NAME = 'odd<&"|];%\r\nname'
ODD_REASON = "exit 1: a|b <c> & [d] ; 5% \x1b[31mred\x1b[0m\r\nnext line \\ `x` *y* _z_"


def wait(source: FakeJobSource, clock: VirtualClock, **options: Any) -> WaitResult:
    policy = PollPolicy(not_found_grace=300)
    run = wait_for_jobs(
        source.refs(), source=source, clock=clock, options=WaitOptions(policy=policy, **options)
    )
    return asyncio.run(run)


def mixed_result() -> WaitResult:
    """One job of each outcome: succeeded, failed, canceled, not found, unfinished."""
    clock = VirtualClock()
    source = FakeJobSource(clock)
    source.add_job("GOOD", [(0, "Queued"), (600, "Running"), (H, "Completed")])
    source.add_job("BAD", [(0, "Running"), (2 * H, "Failed")])
    source.add_job("STOPPED", [(0, "Running"), (H, "CancelRequested"), (H + 90, "Canceled")])
    source.add_job("GHOST", [(0, None)])
    source.add_job("SLOW", [(0, "Queued"), (3 * H, "Running"), (10 * H, "Completed")])
    return wait(source, clock, timeout=4 * H)


def odd_result() -> WaitResult:
    """Names, workspace and reason full of characters that break XML, Markdown and HTML."""
    clock = VirtualClock()
    source = FakeJobSource(clock)
    odd_workspace = WorkspaceRef("sub", "rg", 'ws<&>"|')
    source.add_job(ODD_NAME, [(0, "Running"), (H, "Failed")], workspace=odd_workspace)
    source.add_job("plain", [(0, "Running"), (600, "Completed")])
    result = wait(source, clock)
    odd = next(job for job in result.jobs if job.name == ODD_NAME)
    odd.reason = ODD_REASON
    return result


def outcomes(result: WaitResult) -> dict[str, str]:
    return {job.name: job.outcome.value if job.outcome else "unfinished" for job in result.jobs}


# -- JUnit -------------------------------------------------------------------------------------


def load_junit(tmp_path: Path, result: WaitResult) -> JUnitXml:
    path = tmp_path / "results.xml"
    path.write_text(render_junit(result), encoding="utf-8")
    ET.parse(path)  # well-formed for a plain XML parser too
    return JUnitXml.fromfile(str(path))


def test_junit_has_one_suite_per_workspace_with_counts_that_match_the_cases(
    tmp_path: Path,
) -> None:
    result = mixed_result()
    xml = load_junit(tmp_path, result)
    suites = list(xml)
    assert [suite.name for suite in suites] == ["ws"]
    suite = suites[0]
    assert (suite.tests, suite.failures, suite.errors, suite.skipped) == (5, 3, 1, 0)
    assert (xml.tests, xml.failures, xml.errors, xml.skipped) == (5, 3, 1, 0)
    assert suite.time >= max(case.time for case in suite)
    assert suite.timestamp == "2026-01-01T00:00:00"


def test_junit_cases_carry_result_type_status_reason_time_and_studio_link(
    tmp_path: Path,
) -> None:
    result = mixed_result()
    jobs = {job.name: job for job in result.jobs}
    cases = {case.name: case for suite in load_junit(tmp_path, result) for case in suite}
    assert set(cases) == set(jobs)
    for name, case in cases.items():
        assert case.classname == "ws"
        assert case.time == pytest.approx(run_time(jobs[name]) or 0.0, abs=1e-3)
        assert jobs[name].link in (case.system_out or "")
    assert cases["GOOD"].is_passed and not cases["GOOD"].result
    assert H <= cases["GOOD"].time <= H + 120
    expected = {
        "BAD": (Failure, "Failed"),
        "STOPPED": (Failure, "Canceled"),
        "GHOST": (Failure, "NotFound"),
        "SLOW": (Error, "Running"),
    }
    for name, (kind, status) in expected.items():
        [problem] = cases[name].result
        assert type(problem) is kind
        assert problem.type == status
        assert jobs[name].link in (problem.text or "")
    assert cases["GHOST"].result[0].message == "not found for 5m00s"
    assert "still Running when the wait ended" in (cases["SLOW"].result[0].text or "")


def test_junit_keeps_odd_names_exact_and_drops_what_xml_cannot_carry(tmp_path: Path) -> None:
    result = odd_result()
    xml = load_junit(tmp_path, result)
    suites = {suite.name: suite for suite in xml}
    assert set(suites) == {'ws<&>"|', "ws"}
    [case] = list(suites['ws<&>"|'])
    assert case.name == ODD_NAME  # CR/LF survive as character references
    assert case.classname == 'ws<&>"|'
    [failure] = case.result
    assert failure.message == ODD_REASON.replace("\x1b", "")
    assert "\x1b" not in render_junit(result)


# -- Markdown ----------------------------------------------------------------------------------


def table_rows(markdown: str) -> list[list[str]]:
    """The body rows of the job table, split on unescaped pipes."""
    rows = [line for line in markdown.splitlines() if line.startswith("|")][2:]
    return [[cell.strip() for cell in re.split(r"(?<!\\)\|", row)[1:-1]] for row in rows]


def unescape_cell(cell: str) -> str:
    cell = re.sub(r"\\(.)", r"\1", cell)
    return cell.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def test_summary_headline_counts_and_table_in_report_order() -> None:
    result = mixed_result()
    summary = render_summary(result)
    assert "**Failed** — 3 of 5 jobs failed, 1 unfinished" in summary
    for line in ("- Succeeded: 1", "- Failed: 1", "- Canceled: 1", "- Not found: 1"):
        assert line in summary
    assert "- Unfinished: 1" in summary
    assert "deadline 2026-01-01 04:00:00Z · elapsed 4h00m" in summary
    assert f"{result.requests} requests" in summary
    rows = table_rows(summary)
    # Bad first (slowest first among them), then unfinished, then the rest.
    assert [row[0] for row in rows] == ["BAD", "STOPPED", "GHOST", "SLOW", "GOOD"]
    # Ran: "~" (escaped) marks amlwait's own measure — this fake source keeps no run times.
    assert rows[0][1:4] == ["Failed", "failed", "\\~2h01m"]
    assert rows[2][1:6] == ["NotFound", "not found", "-", "-", "not found for 5m00s"]
    assert all(len(row) == 7 for row in rows)
    assert rows[4][6].startswith("[open](https://ml.azure.com/runs/GOOD?wsid=/subscriptions/")


def test_summary_of_a_success_says_so() -> None:
    clock = VirtualClock()
    source = FakeJobSource(clock)
    for i in range(3):
        source.add_job(f"J{i}", [(0, "Running"), (600 * (i + 1), "Completed")])
    result = wait(source, clock)
    summary = render_summary(result)
    assert result.outcome is BatchOutcome.SUCCEEDED
    assert "**Succeeded** — all 3 jobs completed" in summary
    assert [row[0] for row in table_rows(summary)] == ["J2", "J1", "J0"]  # slowest first


def test_summary_of_a_timeout_names_the_unfinished_jobs() -> None:
    clock = VirtualClock()
    source = FakeJobSource(clock)
    source.add_job("QUICK", [(0, "Running"), (600, "Completed")])
    source.add_job("SLOW", [(0, "Running"), (10 * H, "Completed")])
    summary = render_summary(wait(source, clock, timeout=H))
    assert "**Timed out** — 1 of 2 jobs unfinished at the deadline" in summary
    assert [row[:3] for row in table_rows(summary)] == [
        ["SLOW", "Running", "unfinished"],
        ["QUICK", "Completed", "succeeded"],
    ]


def test_summary_escapes_cells_so_rows_stay_whole() -> None:
    summary = render_summary(odd_result())
    rows = table_rows(summary)
    assert all(len(row) == 8 for row in rows)  # two workspaces: a workspace column
    odd = rows[0]
    assert unescape_cell(odd[0]) == ODD_NAME.replace("\r", " ").replace("\n", " ")
    assert unescape_cell(odd[1]) == 'ws<&>"|'
    assert unescape_cell(odd[6]) == re.sub(r"[\x1b\r\n]", " ", ODD_REASON)
    assert "<" not in summary.split("| Job |")[1].replace("&lt;", "")
    link = re.fullmatch(r"\[open\]\((\S+)\)", odd[7])
    assert link is not None
    assert "%3C&amp;%22%7C%5D;%25%0D%0Aname?" in link.group(1)


def test_summary_of_a_huge_wait_lists_every_bad_job_and_the_slowest_others() -> None:
    clock = VirtualClock()
    source = FakeJobSource(clock)
    total = FULL_TABLE_LIMIT + 100
    for i in range(total):
        status = "Failed" if i % 200 == 0 else "Completed"
        source.add_job(f"J{i:04d}", [(0, "Running"), (60 + i, status)])
    result = wait(source, clock)
    rows = table_rows(render_summary(result))
    assert len(rows) == 3 + KEPT_OTHERS
    assert [row[0] for row in rows[:3]] == ["J0400", "J0200", "J0000"]
    assert all(row[2] == "succeeded" for row in rows[3:])
    assert f"{total - 3 - KEPT_OTHERS} more jobs are not listed" in render_summary(result)


# -- HTML: structure ---------------------------------------------------------------------------


class _PageParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: Counter[str] = Counter()
        self.attributes: list[tuple[str, str, str | None]] = []
        self.table_rows: list[list[str]] = []
        self._cell: list[str] | None = None
        self._row: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] += 1
        self.attributes += [(tag, key, value) for key, value in attrs]
        if tag == "tr":
            self._row = []
        elif tag == "td":
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._row is not None and self._cell is not None:
            self._row.append("".join(self._cell))
            self._cell = None
        elif tag == "tr" and self._row:
            self.table_rows.append(self._row)
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def markers(svg: ET.Element) -> Counter[str]:
    """Finish markers per colour: every job's row ends in one."""
    marker_colours = {shades.marker for shades in PALETTE.values()}
    return Counter(
        rect.get("fill", "")
        for rect in svg.iter(f"{SVG}rect")
        if rect.get("fill") in marker_colours
    )


def test_html_is_self_contained_and_shows_headline_counts_legend_table() -> None:
    result = mixed_result()
    page = render_html(result)
    parser = _PageParser()
    parser.feed(page)
    assert parser.tags["script"] == 0 and parser.tags["link"] == 0 and parser.tags["img"] == 0
    assert not [a for a in parser.attributes if a[1] == "src"]
    hrefs = [value for tag, key, value in parser.attributes if key == "href"]
    assert len(hrefs) == 5 and all((h or "").startswith("https://ml.azure.com/") for h in hrefs)
    assert "<strong>Failed</strong> — 3 of 5 jobs failed, 1 unfinished" in page
    assert 'class="legend"' in page and "Unfinished: <strong>1</strong>" in page
    assert [row[0] for row in parser.table_rows] == ["BAD", "STOPPED", "GHOST", "SLOW", "GOOD"]


def test_html_timeline_draws_a_marker_per_job_in_its_outcome_colour() -> None:
    result = mixed_result()
    svg = ET.fromstring(render_timeline(result))
    expected = Counter(PALETTE[outcome].marker for outcome in outcomes(result).values())
    assert markers(svg) == expected
    labels = [t.text for t in svg.iter(f"{SVG}text") if t.get("class") == "label"]
    assert sorted(labels) == sorted(job.name for job in result.jobs)


def test_timeline_row_segments_follow_the_history() -> None:
    result = mixed_result()
    jobs = {job.name: job for job in result.jobs}
    good = timeline_row(jobs["GOOD"], result)
    assert [s.kind for s in good.segments] == ["waiting", "running"]
    assert good.segments[0].start == result.started_at
    assert good.segments[1].end == good.end == jobs["GOOD"].finished_at
    slow = timeline_row(jobs["SLOW"], result)
    assert [s.kind for s in slow.segments] == ["waiting", "running"]
    assert slow.end == result.ended_at
    ghost = timeline_row(jobs["GHOST"], result)
    assert [s.kind for s in ghost.segments] == ["unseen"]
    assert ghost.outcome == "not_found"


def test_timeline_starts_at_creation_when_the_service_gave_it() -> None:
    result = mixed_result()
    good = next(job for job in result.jobs if job.name == "GOOD")
    good.created_at = "2025-12-31T23:00:00Z"  # an hour before the wait
    row = timeline_row(good, result)
    assert row.segments[0].kind == "unseen"
    assert row.start == result.started_at - H


def test_html_escapes_every_odd_character() -> None:
    result = odd_result()
    page = render_html(result)
    assert ODD_NAME not in page and "\x1b" not in page
    assert "odd&lt;&amp;&quot;|];%" in page
    parser = _PageParser()
    parser.feed(page)
    odd_row = next(row for row in parser.table_rows if row[0].startswith("odd"))
    assert odd_row[0] == ODD_NAME
    assert odd_row[1] == 'ws<&>"|'
    assert odd_row[6] == ODD_REASON.replace("\x1b", "")
    ET.fromstring(render_timeline(result))  # the SVG is well-formed XML


def test_html_timeline_of_1200_jobs_draws_every_job_in_thin_unlabelled_rows() -> None:
    clock = VirtualClock()
    source = FakeJobSource(clock)
    for i in range(1200):
        end = "Failed" if i % 100 == 0 else "Completed"
        source.add_job(f"J{i:04d}", [(0, "Queued"), (60, "Running"), (120 + i, end)])
    result = wait(source, clock, timeout=0)
    timeline = render_timeline(result)
    svg = ET.fromstring(timeline)
    assert sum(markers(svg).values()) == 1200
    assert 'class="label"' not in timeline
    height = int(svg.get("height", "0"))
    assert 1200 * 3 < height < 1200 * 4 + 100
    assert len(render_html(result)) < 1_500_000


# -- HTML: rendered by Chromium ----------------------------------------------------------------

CHROMIUM = shutil.which("chromium")


def screenshot(page: Path, png: Path, profile: Path, size: tuple[int, int]) -> Image.Image:
    assert CHROMIUM is not None
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
        "--force-color-profile=srgb",
        f"--user-data-dir={profile}",
        f"--screenshot={png}",
        f"--window-size={size[0]},{size[1]}",
        page.as_uri(),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert png.exists(), f"chromium wrote no screenshot (exit {done.returncode}): {done.stderr}"
    return Image.open(png).convert("RGB")


def colour_mask(image: Image.Image, colour: str) -> Image.Image:
    """White where ``image`` is exactly ``colour``, black elsewhere."""
    solid = Image.new("RGB", image.size, colour)
    difference = ImageChops.difference(image, solid).convert("L")
    return difference.point(lambda value: 255 if value == 0 else 0)


def rows_of(mask: Image.Image) -> int:
    """Runs of consecutive pixel rows where ``mask`` has any pixel set."""
    runs, previous = 0, False
    for y in range(mask.height):
        present = mask.crop((0, y, mask.width, y + 1)).getbbox() is not None
        runs += present and not previous
        previous = present
    return runs


def sixty_jobs() -> WaitResult:
    clock = VirtualClock()
    source = FakeJobSource(clock)
    for i in range(40):
        source.add_job(
            f"OK_{i:02d}", [(0, "Queued"), (300 * i, "Running"), (H + 240 * i, "Completed")]
        )
    for i in range(8):
        source.add_job(
            f"FAIL_{i}", [(0, "Preparing"), (900, "Running"), (2 * H + 900 * i, "Failed")]
        )
    for i in range(4):
        source.add_job(
            f"CANCEL_{i}",
            [(0, "Running"), (H * (i + 1), "CancelRequested"), (H * (i + 1) + 60, "Canceled")],
        )
    for i in range(3):
        source.add_job(f"GHOST_{i}", [(0, None)])
    for i in range(5):
        source.add_job(f"LATE_{i}", [(0, None), (50 * (i + 1), "Queued"), (2 * H, "Running")])
    return wait(source, clock, timeout=6 * H)


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary on PATH (shutil.which)")
def test_chromium_renders_one_row_per_job_in_its_outcome_colour(tmp_path: Path) -> None:
    result = sixty_jobs()
    assert len(result.jobs) == 60 <= LABEL_LIMIT
    page = tmp_path / "report.html"
    page.write_text(render_html(result), encoding="utf-8")
    image = screenshot(page, tmp_path / "report.png", tmp_path / "profile", (1300, 1500))

    plot = colour_mask(image, PLOT_BACKGROUND).getbbox()
    assert plot is not None, "the chart's plot area is not in the screenshot"
    svg = ET.fromstring(render_timeline(result))
    plot_rect = next(svg.iter(f"{SVG}rect"))
    assert plot[3] - plot[1] == int(plot_rect.get("height", "0")), "the chart is cut off"
    assert plot[3] < image.height

    chart = image.crop(plot)
    want = Counter(outcomes(result).values())
    assert want == {"succeeded": 40, "failed": 8, "canceled": 4, "not_found": 3, "unfinished": 5}
    seen = {
        "succeeded": rows_of(colour_mask(chart, PALETTE["succeeded"].marker)),
        "failed": rows_of(colour_mask(chart, PALETTE["failed"].marker)),
        "canceled": rows_of(colour_mask(chart, PALETTE["canceled"].marker)),
        "not found or unfinished": rows_of(colour_mask(chart, PALETTE["unfinished"].marker)),
    }
    assert seen == {
        "succeeded": 40,
        "failed": 8,
        "canceled": 4,
        "not found or unfinished": 3 + 5,
    }
    # Jobs seen running show a full-colour bar: all but the never-found ones.
    assert rows_of(colour_mask(chart, PALETTE["succeeded"].running)) == 40
    assert rows_of(colour_mask(chart, PALETTE["unfinished"].running)) == 5
