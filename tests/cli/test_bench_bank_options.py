"""``neonet bench bank``'s point options: the points they ask for and the errors."""

from __future__ import annotations

import pytest

from neonet.bench import bank
from neonet.cli.main import main


def test_points_of_the_full_run_quick_run_one_point_and_repeats() -> None:
    assert bank._points(False, None) == [
        *((n, bank.SWEEP_SECONDS) for n in bank.SWEEP_ACCOUNTS),
        (bank.HEADLINE_ACCOUNTS, 10.0),
    ]
    assert bank._points(True, None) == [(bank.QUICK_ACCOUNTS, 3.0)]
    assert bank._points(False, 40) == [(40, 10.0)]
    assert bank._points(False, None, 3) == [(bank.HEADLINE_ACCOUNTS, bank.SWEEP_SECONDS)] * 3
    assert bank._points(True, 12, 2) == [(12, bank.SWEEP_SECONDS)] * 2


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--points", "0"], "--points must be 1..100"),
        (["--points", "101"], "--points must be 1..100"),
        (["--accounts", "0"], "--accounts must be at least 1"),
    ],
)
def test_bad_point_options_are_clear_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench", "bank", *argv]) != 0
    assert message in capsys.readouterr().err
