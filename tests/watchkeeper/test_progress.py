"""Progress shows on a terminal only: a pseudo-terminal sees the bar and the stages, a
pipe or a file sees nothing."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import re
import select
import struct
import termios

import pytest

from watchkeeper.progress import Stages, on_terminal, progress_bar


@pytest.fixture(params=[0, 100], ids=["no-size", "100-columns"])
def terminal(request):
    """The writing end of a pseudo-terminal as a text stream (one that reports no size,
    as some CI terminals do, and one 100 columns wide), and a function reading what was
    written to it."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 30, request.param, 0, 0))
    stream = os.fdopen(follower, "w", encoding="utf-8")

    def read() -> str:
        stream.flush()
        chunks = []
        while True:
            ready, _, _ = select.select([leader], [], [], 0.5)
            if not ready:
                break
            chunks.append(os.read(leader, 65536))
        return b"".join(chunks).decode("utf-8", errors="replace")

    yield stream, read
    stream.close()
    os.close(leader)


def test_a_pseudo_terminal_counts_as_a_terminal_and_a_pipe_does_not(terminal) -> None:
    stream, _ = terminal
    assert on_terminal(stream)
    reader, writer = os.pipe()
    with os.fdopen(writer, "w") as pipe:
        assert not on_terminal(pipe)
    os.close(reader)
    assert not on_terminal(io.StringIO())


def test_the_bar_shows_count_rate_and_eta_on_a_terminal(terminal) -> None:
    stream, read = terminal
    with progress_bar(total=50, description="replay", unit="sale", stream=stream) as bar:
        assert bar.shown
        for _ in range(50):
            bar.advance()
        bar.note(rejected=0)
    text = read()
    assert "replay" in text
    assert "50/50" in text
    assert re.search(r"sale/s", text), text  # the rate
    assert re.search(r"<\d\d:\d\d", text), text  # the time remaining


def test_stages_are_numbered_and_timed_on_a_terminal(terminal) -> None:
    stream, read = terminal
    stages = Stages(2, stream=stream)
    with stages.stage("loading the data"):
        pass
    with pytest.raises(RuntimeError), stages.stage("training"):
        raise RuntimeError("boom")
    text = read()
    assert re.search(r"\[1/2\] loading the data … \d+\.\d s", text), text
    assert re.search(r"\[2/2\] training … failed after \d+\.\d s", text), text


def test_nothing_is_written_to_a_pipe() -> None:
    reader, writer = os.pipe()
    with os.fdopen(writer, "w") as pipe:
        with progress_bar(total=10, description="replay", stream=pipe) as bar:
            assert not bar.shown
            bar.advance(10)
            bar.note(rejected=1)
        stages = Stages(1, stream=pipe)
        with stages.stage("training"):
            pass
    with os.fdopen(reader, "rb") as out:
        assert out.read() == b""
