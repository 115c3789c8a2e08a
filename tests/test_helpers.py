"""Helpers the tests rely on, tested apart from the product tests that use them: a
helper that misreads its input would make those tests pass or fail for nothing."""

from __future__ import annotations

from tests.deploy.conftest import exec_form, parse_dockerfile


def test_exec_form_reads_a_json_array_and_shell_words() -> None:
    assert exec_form('["watchkeeper", "serve"]') == ["watchkeeper", "serve"]
    assert exec_form('watchkeeper serve --port "8 000"') == [
        "watchkeeper",
        "serve",
        "--port",
        "8 000",
    ]


def test_dockerfile_parser_joins_continued_lines_and_names_stages() -> None:
    text = """
# a comment
FROM python:3.11-slim AS build
RUN pip install \\
    watchkeeper
FROM python:3.11-slim
CMD ["watchkeeper", "serve"]
"""
    build, final = parse_dockerfile(text)
    assert (build.base, build.name, final.base, final.name) == (
        "python:3.11-slim",
        "build",
        "python:3.11-slim",
        None,
    )
    # a continued instruction is one instruction; its words are what the tests read
    [(instruction, argument)] = build.instructions
    assert instruction == "RUN" and exec_form(argument) == ["pip", "install", "watchkeeper"]
    assert final.args("CMD") == ['["watchkeeper", "serve"]']
