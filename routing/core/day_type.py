"""Day types: is a local date a working day, a weekend or a holiday for this account?

National calendars come from the `holidays` package, which knows substituted days off
(Russia's 2026-12-31) and transferred working Saturdays. The account's own extra holidays
and working days win over the national calendar; its extra working days win over
everything (a company that works on a public holiday says so explicitly).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from functools import lru_cache

import holidays

WORKING, WEEKEND, HOLIDAY = "working", "weekend", "holiday"
DAY_TYPES = (WORKING, WEEKEND, HOLIDAY)
DAY_TYPE_BIT = {WORKING: 1, WEEKEND: 2, HOLIDAY: 4}
WEEKDAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DEFAULT_WEEKEND = frozenset({5, 6})


@dataclass(frozen=True)
class NationalYear:
    holidays: frozenset[int]  # date ordinals that are days off
    working_weekend_days: frozenset[int]  # weekend dates that are working days (transfers)
    weekend: frozenset[int]  # weekday numbers, Monday = 0


def preload_calendars() -> None:
    """Import every country's calendar code now. python-holidays imports a country's module
    on its first use; in Kamailio that would be a worker's first call to that country, and
    done before the fork the code is shared by every worker (0.13 s, ~9 MiB, measured)."""
    for country in holidays.list_supported_countries():
        holidays.country_holidays(country)


@lru_cache(maxsize=512)
def national_year(country: str | None, subdivision: str | None, year: int) -> NationalYear:
    """The national calendar of one year, computed once per process and memoised."""
    if not country:
        return NationalYear(frozenset(), frozenset(), DEFAULT_WEEKEND)
    calendar = holidays.country_holidays(country, subdiv=subdivision, years=year)
    days = frozenset(d.toordinal() for d in calendar if d.year == year)
    transfers = frozenset(
        d.toordinal() for d in getattr(calendar, "weekend_workdays", ()) if d.year == year
    )
    weekend = frozenset(getattr(calendar, "weekend", DEFAULT_WEEKEND))
    return NationalYear(days, transfers, weekend)


@lru_cache(maxsize=1024)
def known_country(country: str, subdivision: str | None = None) -> str | None:
    """None if python-holidays knows the country (and subdivision), else why not (memoised:
    a load of 100,000 accounts asks about a handful of countries)."""
    try:
        holidays.country_holidays(country, subdiv=subdivision, years=2026)
    except NotImplementedError:
        return f"country {country!r} has no national calendar in python-holidays"
    except Exception as exc:  # holidays raises NotImplementedError or ValueError variants
        return f"{country}/{subdivision}: {exc}"
    return None


def day_type(
    day: date,
    country: str | None,
    subdivision: str | None,
    extra_holidays: frozenset[int],
    extra_workdays: frozenset[int],
) -> str:
    ordinal = day.toordinal()
    if ordinal in extra_workdays:
        return WORKING
    if ordinal in extra_holidays:
        return HOLIDAY
    national = national_year(country, subdivision, day.year)
    if ordinal in national.holidays:
        return HOLIDAY
    if ordinal in national.working_weekend_days:
        return WORKING
    if day.weekday() in national.weekend:
        return WEEKEND
    return WORKING
