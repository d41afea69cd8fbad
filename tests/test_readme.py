"""README.md's set-up commands are the ones CI runs, and its tour stays true."""

from __future__ import annotations

import re

from conftest import REPO


def setup_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text.split("## Set up", 1)[1].split("\n## ", 1)[0]
    return [line.strip() for line in section.splitlines() if line.startswith("    ") and line.strip()]


def test_readme_has_exactly_two_setup_commands_and_ci_runs_the_test_one():
    commands = setup_commands()
    assert len(commands) == 2
    build, test = commands
    assert "moezoo build specs/deepseek_v3.yaml" in build and "moezoo report" in build
    assert test.endswith("pytest -q")
    ci = (REPO / ".ci" / "run").read_text()
    assert test in ci.splitlines()


def test_readme_links_exist():
    text = (REPO / "README.md").read_text()
    for link in re.findall(r"\]\(((?:docs|specs|generated)/[^)]+)\)", text):
        assert (REPO / link).exists(), link


def test_the_zoo_table_in_docs_is_what_moezoo_table_prints():
    """docs/accounting.md quotes `moezoo table --markdown` (defaults); a change of the accounting must update it."""
    from click.testing import CliRunner

    from moezoo.cli import cli

    result = CliRunner().invoke(cli, ["table", "--markdown"])
    assert result.exit_code == 0, result.output
    table = result.output.strip()
    assert table.splitlines()[0].startswith("| model | routed |")
    assert table in (REPO / "docs" / "accounting.md").read_text()
