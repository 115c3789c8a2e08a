"""The README's screenshot of the report was drawn by the report's current code."""

from __future__ import annotations

from tests.monitoring.report.screenshot import DIGEST, IMAGE, inputs_digest


def test_the_readme_screenshot_is_not_stale() -> None:
    assert IMAGE.is_file() and IMAGE.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    recorded = DIGEST.read_text().strip() if DIGEST.is_file() else "nothing"
    assert recorded == inputs_digest(), (
        "docs/images/report.png was drawn by other code than the report's: "
        "run `make report-screenshot`"
    )
