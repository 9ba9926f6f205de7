"""CI runs what README.md tells a new user to run: the Quickstart block, as written."""

import runpy
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
quickstart_commands = runpy.run_path(str(ROOT / ".ci" / "quickstart.py"))["quickstart_commands"]


def test_ci_runs_the_readme_quickstart_commands():
    printed = subprocess.run([sys.executable, ".ci/quickstart.py"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.splitlines()
    commands = quickstart_commands((ROOT / "README.md").read_text(encoding="utf-8"))
    assert printed == commands
    assert commands[0].startswith('pip install -e ".[dev,jax]"')
    assert any(command.startswith("tox -e bench") for command in commands)
    assert any(command.split()[0] == "pytest" for command in commands)
    assert any("--check reports/baseline.json" in command for command in commands)
    code = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if not line.lstrip().startswith("#")]
    assert any("python .ci/quickstart.py" in line for line in code)
    # No command of its own besides setting up the environment: it cannot drift from the README.
    assert not any(word in line for line in code for word in ("pytest", "tox", "analysis.report"))


def test_the_gate_reads_the_json_that_the_main_job_writes():
    commands = quickstart_commands((ROOT / "README.md").read_text(encoding="utf-8"))
    gate = next(command for command in commands if "--check" in command)
    result = gate.split("analysis.report", 1)[1].split()[0]
    assert f"--benchmark-json {{toxinidir}}/{result}" in (ROOT / "tox.ini").read_text()


def test_the_github_workflow_runs_the_same_script():
    workflow = (ROOT / ".github" / "workflows" / "ci.yml").read_text()
    assert "bash .ci/run" in workflow


@pytest.mark.parametrize("text", ["# membed\n", "## Quickstart\n\nno block\n", "## Quickstart\n```bash\n# x\n```\n"])
def test_a_readme_without_quickstart_commands_is_an_error(text):
    with pytest.raises(ValueError, match="Quickstart"):
        quickstart_commands("\n" + text)
