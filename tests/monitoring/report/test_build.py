"""Writing the report file: all of it or nothing, and a failure names the output."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitoring.report.build import ReportNotWritten, write_report
from monitoring.report.records import Period
from watchkeeper.settings import Settings


def test_an_output_that_is_a_directory_is_refused_naming_it_and_leaves_nothing_behind(
    settings: Settings, tmp_path: Path
) -> None:
    """os.replace failed onto the directory and left `.out.html.<pid>.tmp` beside it; the
    error named that temporary file."""
    output = tmp_path / "out.html"
    output.mkdir()

    with pytest.raises(ReportNotWritten) as refused:
        write_report(settings, Period(), output)

    assert refused.value.message == f"cannot write the report to {output}: it is a directory"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".out")) == []


def test_a_report_replaces_the_file_it_is_written_to(settings: Settings, tmp_path: Path) -> None:
    output = tmp_path / "reports" / "out.html"
    output.parent.mkdir()
    output.write_text("an older report")

    write_report(settings, Period(), output)

    assert output.read_text().startswith("<!DOCTYPE html>")
    assert [p.name for p in output.parent.iterdir()] == ["out.html"]
