"""Locust's web UI with the llmcap tab, in a real headless Chromium against the stub server: the search
is started from the UI's own Start button, and the tab shows the steps as they are judged and the
answer, with the report linked."""

import json
import os
import signal
import subprocess
import time
import urllib.request

import pytest

from tests.browser import Browser, needs_browser
from tests.conftest import LOCUST, REPO, free_port, stop_process, wait_http

pytestmark = [needs_browser, pytest.mark.browser, pytest.mark.slow]


def status(url: str) -> dict:
    return json.loads(urllib.request.urlopen(url + "/llmcap/status", timeout=5).read())


def test_the_search_runs_from_the_web_ui_and_the_llmcap_tab_shows_it(stub, tmp_path):
    stub.configure(first_delay_ms=30, chunks=5)
    port = free_port()
    ui = f"http://127.0.0.1:{port}"
    locust = subprocess.Popen(
        [
            LOCUST,
            "-f",
            str(REPO / "loadtest" / "text2sql.py"),
            "-H",
            stub.url,
            "--web-host",
            "127.0.0.1",
            "--web-port",
            str(port),
            "--run-dir",
            str(tmp_path / "run"),
            "--start-rps",
            "20",
            "--max-rps",
            "40",
            "--step-seconds",
            "5",
            "--confirm-seconds",
            "5",
            "--max-step-seconds",
            "10",
            "--warmup-seconds",
            "1",
        ],
        cwd=REPO,
        stdout=open(tmp_path / "locust.out", "w"),
        stderr=subprocess.STDOUT,
    )
    browser = None
    try:
        wait_http(ui + "/", timeout_s=30)
        assert not status(ui)["rows"], "nothing runs before Start is pressed"
        browser = Browser(tmp_path / "chromium")
        browser.open(ui + "/")
        # Locust's own start form (with a load shape it asks only for the host): press its button
        label = browser.wait_for(
            "(() => { const b = document.querySelector('form button[type=submit]'); return b && b.innerText; })()"
        )
        assert "START" in label.upper()
        browser.js("document.querySelector('form button[type=submit]').click()")
        deadline = time.time() + 180
        while not status(ui)["done"]:
            assert time.time() < deadline, "the search did not finish"
            assert locust.poll() is None, (tmp_path / "locust.out").read_text()[-2000:]
            time.sleep(1)
        rows = status(ui)["rows"]
        steps = [r for r in rows if r["step"].isdigit()]
        print("llmcap tab:", *(f"{r['step']} {r['phase']} {r['offered']} {r['verdict']}" for r in steps), sep="\n  ")
        assert [r["phase"] for r in steps][:2] == ["grow", "grow"] and steps[-1]["phase"] == "confirm"
        assert all(r["verdict"] == "PASS" for r in steps)
        answer = rows[-1]
        assert answer["step"] == "answer" and "max sustained rate 40.00 req/s" in answer["reason"]
        # the tab in the page itself, as a person sees it
        browser.open(ui + "/?tab=llmcap")
        text = browser.wait_for(
            "(() => { const t = document.body.innerText; return t.includes('max sustained rate') && t; })()", 30
        )
        assert "Why" in text and "confirm" in text and "Report: /llmcap/report" in text
        shot = browser.screenshot(tmp_path / "llmcap-tab.png")
        assert shot.stat().st_size > 20_000, "the screenshot is (nearly) blank"
        print(f"screenshot: {shot}")
        report = urllib.request.urlopen(ui + "/llmcap/report", timeout=10).read().decode()
        assert "llmcap capacity report" in report and "40.0" in report
    finally:
        if browser is not None:
            browser.close()
        if locust.poll() is None:
            os.kill(locust.pid, signal.SIGINT)
            try:
                locust.wait(30)
            except subprocess.TimeoutExpired:
                stop_process(locust)
    assert json.loads((tmp_path / "run" / "result.json").read_text())["max_sustained_rps"] == 40
