"""Argument mistakes of the command-line tools are one line on stderr, exit status 2."""

import pytest

from experiments.summarize import main as summarize
from mbo.active.campaign.cli import main as campaign


@pytest.mark.parametrize("tool, argv, problem", [
    (campaign, ["sugest", "lab"], "mbo-campaign: error: argument COMMAND: invalid choice: 'sugest'"),
    (campaign, ["suggest", "lab", "--plate", "97"], "mbo-campaign suggest: error: argument --plate: invalid "
                                                    "choice: 97"),
    (summarize, ["--bogus", "x"], "mbo-summarize: error: unrecognized arguments: --bogus"),
])
def test_argument_mistakes_are_one_line(tool, argv, problem, capsys):
    with pytest.raises(SystemExit) as exited:
        tool(argv)
    err = capsys.readouterr().err
    assert exited.value.code == 2 and err.count("\n") == 1 and err.startswith(problem), err
    assert err.rstrip().endswith("--help)")
