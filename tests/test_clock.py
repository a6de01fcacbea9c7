"""Local wall times that do not exist or happen twice (DST), as `simulate --at` checks them."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from routing.core.clock import wall_time_problem

ZONES = [ZoneInfo(z) for z in ("Europe/Berlin", "America/New_York", "Europe/Moscow", "Australia/Lord_Howe")]


def test_the_spring_gap_and_the_autumn_fold() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    gap = wall_time_problem(datetime(2026, 3, 29, 2, 30), berlin)
    assert gap is not None and gap[0] == "gap" and "UTC+01:00 to UTC+02:00" in gap[1]
    fold = wall_time_problem(datetime(2026, 10, 25, 2, 30), berlin)
    assert fold is not None and fold[0] == "fold" and "UTC+02:00, then UTC+01:00" in fold[1]
    assert wall_time_problem(datetime(2026, 7, 1, 2, 30), berlin) is None
    assert wall_time_problem(datetime(2026, 3, 29, 2, 30), ZoneInfo("Europe/Moscow")) is None  # no DST since 2014


@given(st.sampled_from(ZONES), st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2040, 1, 1)))
def test_a_time_without_a_problem_is_one_instant_that_reads_back(zone: ZoneInfo, naive: datetime) -> None:
    problem = wall_time_problem(naive, zone)
    aware = naive.replace(tzinfo=zone)
    back = aware.astimezone(UTC).astimezone(zone).replace(tzinfo=None)
    if problem is None:
        assert back == naive and aware.utcoffset() == naive.replace(tzinfo=zone, fold=1).utcoffset()
    elif problem[0] == "gap":
        assert back != naive  # no instant shows this wall time
    else:
        early, late = naive.replace(tzinfo=zone, fold=0), naive.replace(tzinfo=zone, fold=1)
        assert early.astimezone(UTC) + (early.utcoffset() - late.utcoffset()) == late.astimezone(UTC)  # type: ignore[operator]
