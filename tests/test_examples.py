"""The shipped example reports: every link resolves inside the repository, no report names the
machine that made it, and the CPU example says what it is on its face."""

import re

import pytest

from tests.conftest import REPO

EXAMPLES = REPO / "reports" / "examples"
REPORTS = sorted(p for p in EXAMPLES.rglob("*.md") if p.name != "README.md")
# a markdown link or image target, and a bare relative file name a report prints
LINK = re.compile(r"\]\(([^)\s]+)\)|(?<![\w/.])((?:[\w.-]+/)*[\w.-]+\.(?:html|md|png|json))\b")
MACHINE = re.compile(r"(?<![\w.])/(?:work|tmp|home|root|Users|mnt)/")


@pytest.mark.parametrize("report", REPORTS, ids=lambda p: str(p.relative_to(EXAMPLES)))
def test_links_resolve_and_no_machine_paths(report):
    text = report.read_text()
    targets = [a or b for a, b in LINK.findall(text)]
    assert targets, "a report links its plots or its runs"
    for target in targets:
        if target.startswith(("http://", "https://")) or "/" not in target and "." not in target:
            continue
        assert (report.parent / target).resolve().is_relative_to(REPO), target
        assert (report.parent / target).exists(), f"{report.name}: {target} does not resolve"
    for page in (report, report.with_suffix(".html")):
        if page.exists():
            assert not MACHINE.search(page.read_text()), f"{page.name} names a path of the machine that made it"


def test_the_cpu_example_says_what_it_is():
    plan = EXAMPLES / "cpu-tiny-plan"
    comparison = (plan / "comparison.md").read_text()
    assert "STAND-IN: these numbers say nothing about a real model" in comparison
    assert "## Fleet for the forecast" in comparison and "## Answers" in comparison
    for variant in ("bf16", "fp32"):
        report = (plan / variant / "report.md").read_text()
        assert "STAND-IN" in report and "Hosted APIs" not in report
        assert "KV cache in use: peak at max sustained / over all steps" in report
        assert re.search(r"\d \(\d[\d,]*–[\d,]+\]", report), "server p50 with its bucket"
        assert "Distance to the hardware limit" not in report and "## Fleet for the forecast" in report
        assert "Prompt tokens served from the prefix cache" in report
