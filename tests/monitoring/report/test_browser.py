"""``watchkeeper report`` on a real Ames replay, opened in a real browser.

Real processes (``serve``, ``monitor``, ``retrain worker``) take the sales of 2009
with late feedback: the monitor finds the drift, the trigger asks for a new model, the
worker trains and judges one; then the sales of 2010 follow. ``watchkeeper report``
writes the page and headless Chromium opens it: every section renders, every chart
draws marks, the console stays silent and the page fetches nothing.

With ``REPORT_SCREENSHOT=path`` (``make report-screenshot``) the test also saves the
README's screenshot there, and records beside it the digest of what drew it
(:mod:`tests.monitoring.report.screenshot`).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from monitoring.monitor import Monitor
from monitoring.replay import Replayer
from monitoring.report.build import write_report
from monitoring.report.records import Period
from tests.conftest import require_service
from tests.monitoring import classifier_log
from tests.monitoring.report import screenshot
from tests.orphan_guard import OrphanGuard, terminate
from tests.processes import Process, query, sqlite_url, wait_for
from watchkeeper.dataset import Dataset
from watchkeeper.registry import ModelRegistry
from watchkeeper.settings import Settings
from watchkeeper.training import TrainedModel

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
# No sandbox: the tests run as root in a container. The rest keep Chromium from
# reaching out on its own (updates, sync, field trials), which would blur the check
# that the page itself fetches nothing.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1700",
    "--hide-scrollbars",
)
WINDOW = 150
# two drifting windows of 150 sales ask for a new model (three by default); the report
# draws the same threshold
TRIGGER = {"WATCHKEEPER_TRIGGER_DRIFT_WINDOWS": "2"}
SECTIONS = ("summary", "timeline", "drifted-features", "ood-rows", "versions", "retraining")


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        require_service("headless Chromium (Debian packages chromium and chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = str(CHROMIUM)
    profile = f"--user-data-dir={tmp_path / 'chromium-profile'}"
    for flag in (*FLAGS, profile):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # Both paths given: Selenium Manager is never asked to download a driver.
    service = Service(str(CHROMEDRIVER), log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    # Chromium is chromedriver's child: its profile flag names this test's browser only
    guard = OrphanGuard(
        f"{terminate(service.process.pid)}; pkill -KILL -f -- {shlex.quote(profile)}"
    )
    try:
        yield driver
    finally:
        driver.quit()
        guard.release()


def _replay(process: Process, dataset: Dataset) -> None:
    report = Replayer(process.url, feedback_delay=0.3).run(dataset)
    assert (report.rejected, report.feedback_failed) == (0, 0), report.summary()


def _all_windowed(url: str) -> bool:
    """Every logged prediction is in an evaluated window (the watermark is the newest
    one's position) and every label is counted."""
    (newest,) = query(url, "SELECT max(seq) FROM predictions")[0]
    marks = dict(query(url, "SELECT name, watermark FROM monitor_state"))
    return newest is not None and marks.get("windows") == newest


def _replayed_log(start: Callable[..., Process], ames: Dataset, data_dir: Path) -> dict[str, str]:
    """Replay 2009, let a retraining run finish, replay 2010; the environment of the
    processes (to point `watchkeeper report` at the same log and registry)."""
    url = sqlite_url(data_dir)
    server = start("serve", WATCHKEEPER_MODEL_POLL_SECONDS="0.2")
    monitor = start(
        "monitor",
        WATCHKEEPER_MONITOR_INTERVAL="0.5",
        WATCHKEEPER_MONITOR_SETTLE_SECONDS="0.2",
        WATCHKEEPER_MONITOR_WINDOW_SIZE=str(WINDOW),
        # a window's tail closes after 10 s: the last rows are judged too
        WATCHKEEPER_MONITOR_WINDOW_SECONDS="10",
        WATCHKEEPER_MONITOR_MIN_SAMPLES="100",
        WATCHKEEPER_MONITOR_MIN_LABELS="50",
        **TRIGGER,
    )
    worker = start("retrain worker", WATCHKEEPER_RETRAIN_POLL_SECONDS="0.2")

    _replay(server, ames.between(200901, 200912))
    finished = "SELECT count(*) FROM retrain_runs WHERE finished_at IS NOT NULL"
    assert wait_for(lambda: query(url, finished)[0][0] >= 1, timeout=240, interval=0.5), (
        monitor.log_path.read_text()[-3000:] + worker.log_path.read_text()[-3000:]
    )
    current = ModelRegistry(data_dir.parent / "registry").current_version()
    assert wait_for(lambda: server.get("/model").json()["version"] == current, timeout=30)
    _replay(server, ames.between(201001, 201012))
    assert wait_for(lambda: _all_windowed(url), timeout=240, interval=0.5), (
        monitor.log_path.read_text()[-3000:]
    )
    return {
        **TRIGGER,
        "WATCHKEEPER_DATA_DIR": str(data_dir),
        "WATCHKEEPER_REGISTRY_PATH": str(data_dir.parent / "registry"),
    }


def test_the_report_of_a_replay_renders_every_section_in_chromium_and_fetches_nothing(
    start_watchkeeper: Callable[..., Process],
    ames: Dataset,
    tmp_path: Path,
    browser: Any,
) -> None:
    from selenium.webdriver.common.by import By

    env = _replayed_log(start_watchkeeper, ames, tmp_path / "var")
    output = tmp_path / "report.html"
    done = subprocess.run(
        [sys.executable, "-m", "watchkeeper_cli", "report", "--output", str(output)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"wrote {output}: ")

    browser.get(output.as_uri())

    assert browser.title == "Watchkeeper monitoring report"
    for section in SECTIONS:
        element = browser.find_element(By.ID, section)
        assert element.is_displayed() and element.size["height"] > 0, section
        assert not element.find_elements(By.CSS_SELECTOR, "p.empty"), section
    charts = browser.find_elements(By.CSS_SELECTOR, "svg.chart")
    timeline = browser.find_elements(By.CSS_SELECTOR, "#timeline svg.chart")
    features = browser.find_elements(By.CSS_SELECTOR, "#drifted-features .feature")
    assert len(timeline) == 4  # verdicts and retraining, OOD, data quality, accuracy
    assert features and len(charts) == 4 + 2 * len(features)
    for chart in charts:
        label = chart.get_attribute("aria-label")
        assert chart.size["width"] > 300 and chart.size["height"] > 100, label
        assert chart.find_elements(By.CSS_SELECTOR, ".mark"), label
    lanes = browser.find_element(By.CSS_SELECTOR, "#timeline svg.chart")
    assert lanes.find_elements(By.CSS_SELECTOR, "rect.verdict.drift")
    assert lanes.find_elements(By.CSS_SELECTOR, ".request.mark")
    assert lanes.find_elements(By.CSS_SELECTOR, "rect.run.mark")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#ood-rows tbody tr")) == 20
    assert browser.find_elements(By.CSS_SELECTOR, "#versions tbody tr")
    assert browser.find_elements(By.CSS_SELECTOR, "#retraining tbody tr")

    assert browser.get_log("browser") == []
    fetched = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    assert fetched == []

    target = os.environ.get("REPORT_SCREENSHOT")
    if target:
        browser.execute_script("window.scrollTo(0, 0)")
        assert browser.save_screenshot(target)
        screenshot.record_inputs(Path(target))


def test_a_classifier_report_renders_its_figures_in_chromium(
    class_monitor: Monitor,
    class_settings: Settings,
    classifier_trained: TrainedModel,
    tmp_path: Path,
    browser: Any,
) -> None:
    """A classifier's log (written as serving writes one), judged by the monitor: the
    page shows its accuracy chart and its figures per window, in place of the MAE."""
    from selenium.webdriver.common.by import By

    model = classifier_log.classifier_of(classifier_trained)
    frame, p = classifier_log.draw(1000, seed=31)
    ids = classifier_log.write_rows(class_monitor.engine, model, frame)
    class_monitor.run_once()
    classifier_log.write_labels(class_monitor.engine, ids, classifier_log.outcomes(p, seed=32))
    class_monitor.run_once()
    output = tmp_path / "classifier-report.html"
    write_report(class_settings, Period(), output)

    browser.get(output.as_uri())

    for section in ("summary", "timeline", "classification", "versions"):
        element = browser.find_element(By.ID, section)
        assert element.is_displayed() and element.size["height"] > 0, section
    timeline = browser.find_elements(By.CSS_SELECTOR, "#timeline svg.chart")
    labels = [chart.get_attribute("aria-label") for chart in timeline]
    assert "accuracy" in labels and "MAE" not in labels
    accuracy = timeline[labels.index("accuracy")]
    assert accuracy.size["width"] > 300 and accuracy.find_elements(By.CSS_SELECTOR, ".mark")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#classification tbody tr")) == 2
    headers = [h.text for h in browser.find_elements(By.CSS_SELECTOR, "#versions th")]
    assert "realised accuracy" in headers and "realised MAE" not in headers
    assert browser.get_log("browser") == []
    fetched = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    assert fetched == []


# What a client may send as a category, and what a reader must see of it
HOSTILE = {
    "nul\x00inside": "nul\\x00inside",
    "": "(empty)",
    "ctl\x01\x07\x1b[31m\x7f": "ctl\\x01\\x07\\x1b[31m\\x7f",
    "nonchar\ufffe": "nonchar\\ufffe",
    "A" * 300_000: "A" * 80 + "… (300,000 characters)",
}
# Code points HTML does not allow (html5lib reports each as an error): controls other
# than ASCII whitespace, surrogates, noncharacters
NOT_HTML = re.compile("[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufdd0-\ufdef\ufffe\uffff]")


def test_hostile_categories_are_shown_visibly_distinct_and_cut_in_chromium(
    settings: Settings,
    server: Flask,
    replay_records: list[dict[str, Any]],
    send_predictions: Callable[..., list[str]],
    make_monitor: Callable[..., Monitor],
    tmp_path: Path,
    browser: Any,
) -> None:
    """NUL, ESC and BEL in categories were written raw (invalid HTML, blank on screen),
    an empty category drew as the same blank label as a NUL one, and one 300 kB value
    made a 6 MB page. Every control now shows as its escape, the empty string as
    "(empty)", and a long value is cut with its full length noted."""
    from selenium.webdriver.common.by import By

    records = [dict(replay_records[i % len(replay_records)]) for i in range(1000)]
    kinds = list(HOSTILE)
    for i in range(0, 1000, 3):  # a third of the rows: Neighborhood drifts, plainly
        records[i]["Neighborhood"] = kinds[(i // 3) % len(kinds)]
    for k in range(len(kinds)):  # one row of each the most out of distribution
        records[3 * k]["Lot_Area"] = 10_000_000 * (k + 1)
    send_predictions(server, records, 1000)
    assert make_monitor().run_once() == 2
    output = tmp_path / "report.html"
    write_report(settings, Period(), output)
    html = output.read_text(encoding="utf-8")

    assert NOT_HTML.findall(html) == []
    assert len(html) < 500_000  # the long value's 300,000 characters: not even once

    browser.get(output.as_uri())
    chart = browser.find_element(
        By.CSS_SELECTOR, '#drifted-features .feature[data-feature="Neighborhood"]'
    )
    ticks = {t.text for t in chart.find_elements(By.CSS_SELECTOR, "text.tick.small")}
    assert {"(empty)", "nul\\x00in", "ctl\\x01\\x", "nonchar\\u"} <= ticks
    tooltips = {
        t.get_attribute("textContent").rsplit(": ", 1)[0]
        for t in chart.find_elements(By.CSS_SELECTOR, "rect.bar title")
    }
    assert set(HOSTILE.values()) <= tooltips
    for summary in browser.find_elements(By.CSS_SELECTOR, "#ood-rows details summary")[:5]:
        summary.click()
    shown = [
        term.find_element(By.XPATH, "following-sibling::dd[1]").text
        for term in browser.find_elements(By.CSS_SELECTOR, "#ood-rows details dt")
        if term.text == "Neighborhood"
    ]
    assert sorted(shown[:5]) == sorted(HOSTILE.values())
    assert browser.get_log("browser") == []
