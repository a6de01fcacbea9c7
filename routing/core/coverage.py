"""`voffice coverage`: which rule and scenario apply, slot by slot, over one ISO week.

For each local day of the week, each slot (15 minutes by default) and each *caller class*
(one per caller list that an enabled rule uses, plus "any other caller") this asks
`engine.decide` what happens, exactly as a real call would be decided: nothing here
re-implements the rule logic. The result is a frozen `Coverage`; `format_text` and
`render_png` present it for NOC engineers.

Times are the account's local wall-clock times: every day has 24 h of slots even on the
days daylight saving time starts or ends (a slot in a skipped hour is decided as if the
clock showed that time, which is what the engine does with a naive local time).

Pure except for `render_png`, which writes the file it is asked to write.
"""

from __future__ import annotations

import colorsys
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from routing.core.engine import OVERRIDE_RULE_ID, CompiledAccount, decide
from routing.core.numbers import E164, compile_patterns, pattern_matches, to_e164
from routing.core.override import SCENARIO_MISSING, Override, local_text

if TYPE_CHECKING:  # Pillow is imported only when a picture is drawn
    from typing import TypeAlias

    from PIL import Image as PILImage
    from PIL import ImageDraw as PILImageDraw
    from PIL import ImageFont as PILImageFont

    Font: TypeAlias = PILImageFont.FreeTypeFont | PILImageFont.ImageFont

MINUTES_PER_DAY = 24 * 60
WEEKDAY_LABELS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")

Cell = tuple[str | None, str]
"""What applies in one slot: (rule id, or None when the default scenario applies; scenario id)."""


# --- ISO weeks ---------------------------------------------------------------------------

_ISO_WEEK = re.compile(r"([0-9]{4})-W([0-9]{2})")


def parse_iso_week(text: str) -> date:
    """The Monday of an ISO 8601 week written `YYYY-Www` (e.g. `2026-W48`)."""
    cleaned = text.strip()
    match = _ISO_WEEK.fullmatch(cleaned)
    if match is None:
        raise ValueError(f"invalid ISO week {text!r}: expected YYYY-Www, e.g. 2026-W48")
    year, week = int(match.group(1)), int(match.group(2))
    if year < 1:
        raise ValueError(f"invalid ISO week {text!r}: year must be 0001 or later")
    weeks = iso_weeks_in_year(year)
    if not 1 <= week <= weeks:
        raise ValueError(f"invalid ISO week {text!r}: ISO year {year} has weeks W01 to W{weeks:02d}")
    return date.fromisocalendar(year, week, 1)


def iso_weeks_in_year(year: int) -> int:
    """52 or 53: the ISO week of 28 December is always the last week of its ISO year."""
    return date(year, 12, 28).isocalendar().week


def iso_week_label(monday: date) -> str:
    iso = monday.isocalendar()
    return f"{iso.year:04d}-W{iso.week:02d}"


# --- the result --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CallerClass:
    """Callers that the rules treat alike, and one number that stands for them."""

    label: str
    caller: str | None  # representative E.164 caller; None: an anonymous caller
    caller_list: str | None  # the list this class is for; None: "any other caller"
    also_matches: tuple[str, ...] = ()  # other used lists the representative falls into


@dataclass(frozen=True, slots=True)
class Day:
    date: date
    day_type: str

    @property
    def label(self) -> str:
        return f"{WEEKDAY_LABELS[self.date.weekday()]} {self.date.isoformat()} {self.day_type}"


@dataclass(frozen=True, slots=True)
class Span:
    """Contiguous slots of one day with the same rule and scenario; `end` is exclusive."""

    start: str  # "HH:MM"
    end: str  # "HH:MM", "24:00" for the end of the day
    first_slot: int
    end_slot: int  # exclusive
    rule: str | None  # None: no rule matched, the default scenario applies
    rule_name: str | None
    scenario: str
    scenario_name: str

    def to_json(self) -> dict[str, Any]:
        return {
            "start": self.start,
            "end": self.end,
            "rule": None if self.rule is None else {"id": self.rule, "name": self.rule_name},
            "scenario": {"id": self.scenario, "name": self.scenario_name},
            "default": self.rule is None,
        }


Runs = tuple[tuple[tuple[Span, ...], ...], ...]
"""runs[class index][day index] -> the spans of that day."""


@dataclass(frozen=True)
class Coverage:
    account: str
    monday: date
    slot_minutes: int
    timezone: str
    days: tuple[Day, ...]  # 7, Monday first
    classes: tuple[CallerClass, ...]
    grid: tuple[tuple[tuple[Cell, ...], ...], ...]  # grid[class][day][slot]
    rule_names: tuple[tuple[str, str], ...]  # (rule id, name), priority order
    scenario_names: tuple[tuple[str, str], ...]  # (scenario id, name), document order
    default_scenario: str
    override: str | None = None  # the manual override decided with (`Override.describe`), if any

    @property
    def week(self) -> str:
        return iso_week_label(self.monday)

    @property
    def slots_per_day(self) -> int:
        return MINUTES_PER_DAY // self.slot_minutes

    def rule_name(self, rule: str | None) -> str | None:
        if rule is None:
            return None
        return dict(self.rule_names).get(rule, rule)

    def scenario_name(self, scenario: str) -> str:
        return dict(self.scenario_names).get(scenario, scenario)

    def slot_index(self, hhmm: str) -> int:
        """The slot that contains local time `HH:MM`."""
        minute = _minutes(hhmm)
        if not 0 <= minute < MINUTES_PER_DAY:
            raise ValueError(f"time {hhmm!r} is not within a day")
        return minute // self.slot_minutes

    def cell(self, class_index: int, day: date | int, hhmm: str) -> Cell:
        """What applies to caller class `class_index` on `day` (a date or 0-6) at `hhmm`."""
        index = day if isinstance(day, int) else (day - self.monday).days
        if not 0 <= index < len(self.days):
            raise ValueError(f"{day} is not in week {self.week}")
        return self.grid[class_index][index][self.slot_index(hhmm)]

    def runs(self) -> Runs:
        """Each class/day row compressed into contiguous spans of equal (rule, scenario)."""
        return tuple(tuple(self._row_runs(row) for row in class_rows) for class_rows in self.grid)

    def _row_runs(self, row: tuple[Cell, ...]) -> tuple[Span, ...]:
        spans: list[Span] = []
        first = 0
        for index in range(1, len(row) + 1):
            if index == len(row) or row[index] != row[first]:
                rule, scenario = row[first]
                spans.append(
                    Span(
                        _hhmm(first * self.slot_minutes),
                        _hhmm(index * self.slot_minutes),
                        first,
                        index,
                        rule,
                        self.rule_name(rule),
                        scenario,
                        self.scenario_name(scenario),
                    )
                )
                first = index
        return tuple(spans)

    def to_json(self) -> dict[str, Any]:
        """Plain data (the runs, not every slot) for `voffice coverage --json`."""
        runs = self.runs()
        return {
            "account": self.account,
            "week": self.week,
            "monday": self.monday.isoformat(),
            "timezone": self.timezone,
            "slot_minutes": self.slot_minutes,
            "default_scenario": {
                "id": self.default_scenario,
                "name": self.scenario_name(self.default_scenario),
            },
            "override": self.override,
            "days": [
                {
                    "date": d.date.isoformat(),
                    "weekday": WEEKDAY_LABELS[d.date.weekday()],
                    "day_type": d.day_type,
                }
                for d in self.days
            ],
            "classes": [
                {
                    "label": c.label,
                    "caller_list": c.caller_list,
                    "caller": c.caller,
                    "also_matches": list(c.also_matches),
                    "days": [
                        {
                            "date": d.date.isoformat(),
                            "day_type": d.day_type,
                            "runs": [span.to_json() for span in day_runs],
                        }
                        for d, day_runs in zip(self.days, class_runs, strict=True)
                    ],
                }
                for c, class_runs in zip(self.classes, runs, strict=True)
            ],
        }


# --- computing it ------------------------------------------------------------------------


def week_coverage(account: CompiledAccount, monday: date, slot_minutes: int = 15,
                  override: Override | None = None) -> Coverage:
    """Decide every slot of the ISO week starting `monday` for every caller class; with a
    manual `override`, the slots inside its window show its scenario, as calls would get."""
    if monday.weekday() != 0:
        raise ValueError(f"{monday.isoformat()} is not a Monday")
    if not 1 <= slot_minutes <= MINUTES_PER_DAY or MINUTES_PER_DAY % slot_minutes:
        raise ValueError(f"slot length {slot_minutes} min does not divide a day evenly")
    plain = account.plain
    number = str(plain["numbers"][0]) if plain["numbers"] else ""
    classes = caller_classes(account)
    dates = [monday + timedelta(days=i) for i in range(7)]
    starts = [time(m // 60, m % 60) for m in range(0, MINUTES_PER_DAY, slot_minutes)]
    day_types: dict[date, str] = {}
    grid: list[tuple[tuple[Cell, ...], ...]] = []
    for klass in classes:
        rows: list[tuple[Cell, ...]] = []
        for day in dates:
            row: list[Cell] = []
            for start in starts:
                decision = decide(account, number, klass.caller, datetime.combine(day, start), override)
                day_types.setdefault(day, decision.day_type)
                row.append((None if decision.rule is None else decision.rule.id, decision.scenario))
            rows.append(tuple(row))
        grid.append(tuple(rows))
    return Coverage(
        account=account.id,
        monday=monday,
        slot_minutes=slot_minutes,
        timezone=str(plain["timezone"]),
        days=tuple(Day(d, day_types.get(d) or account.day_type(datetime.combine(d, time()))) for d in dates),
        classes=classes,
        grid=tuple(grid),
        rule_names=tuple((str(r["id"]), str(r["name"])) for r in plain["rules"])
        + (((OVERRIDE_RULE_ID, "manual override"),) if override is not None else ()),
        scenario_names=tuple((str(k), str(v["name"])) for k, v in plain["scenarios"].items()),
        default_scenario=str(plain["default_scenario"]),
        override=None if override is None else _override_text(override, account),
    )


def _override_text(override: Override, account: CompiledAccount) -> str:
    status = override.status_at(override.set_at, account.roots)
    missing = " (its scenario is gone: ignored, the rules decide)" if status == SCENARIO_MISSING else ""
    return f"calls go to {override.describe(account.tz)} (set by {override.set_by or '?'} at " \
           f"{local_text(override.set_at, account.tz)}){missing}"


def caller_classes(account: CompiledAccount) -> tuple[CallerClass, ...]:
    """One class per caller list used by an enabled rule (priority order), then the rest."""
    plain = account.plain
    lists: dict[str, Any] = plain["caller_lists"]
    used: list[str] = []
    for rule in plain["rules"]:  # the compiler keeps only enabled rules, by priority
        list_id = rule["caller_list"]
        if list_id and list_id not in used:
            used.append(list_id)
    regexes = {i: compile_patterns(tuple(lists[i]["patterns"])) for i in used}
    country = account.country
    classes: list[CallerClass] = []
    for list_id in used:
        candidates = [c for p in lists[list_id]["patterns"] if (c := representative_caller(p, country)) is not None]
        if not candidates:
            continue  # a list that matches no number (validation reports it) has no callers
        others = {c: tuple(o for o in used if o != list_id and regexes[o].fullmatch(c)) for c in candidates}
        caller = next((c for c in candidates if not others[c]), candidates[0])
        classes.append(CallerClass(f"{lists[list_id]['name']} ({list_id})", caller, list_id, others[caller]))
    all_regexes = [compile_patterns(tuple(v["patterns"])) for v in lists.values()]
    other = _outsider(list(regexes.values()), all_regexes, country)
    if not used:
        label = "any caller"
    elif other is None:
        label = "any other caller (anonymous)"
    else:
        label = "any other caller"
    classes.append(CallerClass(label, other, None))
    return tuple(classes)


def representative_caller(pattern: str, country: str | None = None) -> str | None:
    """An E.164 number that caller pattern `pattern` matches, or None if there is none.

    '?' becomes '0' and the first '*' enough '0' digits for a 10-15 digit number (11
    preferred, other '*' stay empty); a wildcard in the first digit becomes '1', since no
    country code starts with 0. The number is checked against the pattern itself and
    must survive the engine's caller normalisation unchanged.
    """
    body = "*" if pattern == "*" else pattern[1:]
    fixed = sum(1 for c in body if c != "*")
    if "*" in body:
        lengths = [n for n in (11, 12, 10, 13, 14, 15, 9, 8, 7) if n >= fixed]
    else:
        lengths = [fixed]
    for length in lengths:
        digits: list[str] = []
        padded = False
        for char in body:
            if char == "*":
                if not padded:
                    digits.append("0" * (length - fixed))
                    padded = True
            else:
                digits.append("0" if char == "?" else char)
        text = "".join(digits)
        if text and body[0] in "?*" and text[0] == "0":
            text = "1" + text[1:]
        candidate = "+" + text
        if (
            E164.fullmatch(candidate)
            and pattern_matches(pattern, candidate)
            and to_e164(candidate, country) == candidate
        ):
            return candidate
    return None


def _outsider(used: list[re.Pattern[str]], every: list[re.Pattern[str]], country: str | None) -> str | None:
    """A number in none of the lists (preferably none at all, else none the rules use)."""
    candidates = ["+" + first + "9" * (length - 1) for first in "198765432" for length in (11, 12, 13, 14, 15, 10)]
    candidates = [c for c in candidates if to_e164(c, country) == c]
    for regexes in (every, used):
        for candidate in candidates:
            if not any(r.fullmatch(candidate) for r in regexes):
                return candidate
    return None


def _minutes(hhmm: str) -> int:
    hours, _, mins = hhmm.partition(":")
    if not (hours.isdigit() and mins.isdigit() and len(mins) == 2):
        raise ValueError(f"time {hhmm!r} is not HH:MM")
    return int(hours) * 60 + int(mins)


def _hhmm(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


# --- text --------------------------------------------------------------------------------


def format_text(cov: Coverage, account: CompiledAccount | None = None) -> str:
    """A readable table: per caller class, per day, the spans and what applies in each.

    Rule and scenario names travel in `cov`; `account`, if given, adds the company name.
    """
    runs = cov.runs()
    last = cov.monday + timedelta(days=6)
    company = str(account.plain.get("name") or "") if account is not None else ""
    heading = f"{cov.account} ({company})" if company else cov.account
    lines = [
        (
            f"{heading}: week {cov.week} (Mon {cov.monday.isoformat()}"
            f" .. Sun {last.isoformat()}), local time {cov.timezone},"
            f" {cov.slot_minutes}-minute slots"
        ),
        (f"default scenario (no rule matches): {cov.scenario_name(cov.default_scenario)} ({cov.default_scenario})"),
    ]
    if cov.override is not None:
        lines.append(f"manual override: {cov.override}")
    width = max((len(_rule_text(s)) for class_runs in runs for day in class_runs for s in day), default=0)
    for klass, class_runs in zip(cov.classes, runs, strict=True):
        lines.append("")
        who = klass.caller if klass.caller is not None else "anonymous"
        title = f"Callers: {klass.label}, e.g. {who}"
        if klass.also_matches:
            title += f" (also in: {', '.join(klass.also_matches)})"
        lines.append(title)
        for day, spans in zip(cov.days, class_runs, strict=True):
            lines.append(f"  {day.label}")
            for span in spans:
                lines.append(f"    {span.start}-{span.end}  {_rule_text(span):<{width}}  -> {span.scenario_name}")
    return "\n".join(lines) + "\n"


def _rule_text(span: Span) -> str:
    return "(default)" if span.rule is None else span.rule_name or span.rule


# --- picture -----------------------------------------------------------------------------

PALETTE: tuple[tuple[int, int, int], ...] = (
    (78, 121, 167),  # blue
    (242, 142, 43),  # orange
    (89, 161, 79),  # green
    (225, 87, 89),  # red
    (118, 183, 178),  # teal
    (237, 201, 72),  # yellow
    (176, 122, 161),  # purple
    (255, 157, 167),  # pink
    (156, 117, 95),  # brown
    (186, 176, 172),  # grey
)
FONT_DIRS = (
    "/usr/share/fonts/truetype/dejavu",
    "/usr/share/fonts/dejavu",
    "/usr/local/share/fonts",
)


def scenario_colours(cov: Coverage) -> dict[str, tuple[int, int, int]]:
    """A stable colour per scenario: its place in the account's scenario list."""
    colours: dict[str, tuple[int, int, int]] = {}
    for index, (scenario, _) in enumerate(cov.scenario_names):
        if index < len(PALETTE):
            colours[scenario] = PALETTE[index]
        else:
            hue = (index * 0.618033988749895) % 1.0
            r, g, b = colorsys.hsv_to_rgb(hue, 0.55, 0.85)
            colours[scenario] = (round(r * 255), round(g * 255), round(b * 255))
    return colours


def render_png(cov: Coverage, account: CompiledAccount | None, path: str | Path) -> None:
    """Write a heat map of `cov` to `path`: rows are days, columns slots, colour = scenario.

    Slots where no rule matched (the default scenario) are hatched. Text uses DejaVu Sans
    (Debian package fonts-dejavu-core) so that Cyrillic names render.
    """
    from PIL import Image, ImageDraw

    account_name = str(account.plain.get("name", "")) if account is not None else ""
    regular, bold = _font(12, bold=False), _font(12, bold=True)
    title_font, small = _font(17, bold=True), _font(10, bold=False)
    cell_font = _font(11, bold=False)
    colours = scenario_colours(cov)
    runs = cov.runs()
    slots = cov.slots_per_day
    cell_w = max(2, 960 // slots)
    grid_w = cell_w * slots
    row_h, header_h, axis_h, gap, margin = 20, 22, 16, 14, 16
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    label_w = 12 + max(int(probe.textlength(d.label, font=regular)) for d in cov.days)
    left = margin + label_w
    right_pad = int(probe.textlength("24:00", font=small)) // 2 + 2  # room for the last tick
    width = left + grid_w + right_pad + margin

    used = [s for s, _ in cov.scenario_names if any(s == c[1] for k in cov.grid for d in k for c in d)]
    has_default = any(c[0] is None for k in cov.grid for d in k for c in d)
    legend_items: list[tuple[str, tuple[int, int, int], bool]] = [
        (f"{cov.scenario_name(s)} ({s})", colours[s], False) for s in used
    ]
    if has_default:
        legend_items.append(
            (
                (
                    "hatched: no rule matched, default scenario "
                    f"{cov.scenario_name(cov.default_scenario)} ({cov.default_scenario})"
                ),
                colours.get(cov.default_scenario, (128, 128, 128)),
                True,
            )
        )
    rules_text = "rules: " + ";  ".join(f"{rid} = {name}" for rid, name in cov.rule_names)
    legend_lines = _wrap_legend(probe, legend_items, regular, width - 2 * margin)
    rules_lines = _wrap_words(probe, rules_text, small, width - 2 * margin)

    top = margin + 24 + 18 + 6
    block_h = header_h + axis_h + 7 * row_h
    height = top + len(cov.classes) * (block_h + gap) + len(legend_lines) * 22 + len(rules_lines) * 15 + margin
    image = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    last = cov.monday + timedelta(days=6)
    title = f"{cov.account}" + (f" — {account_name}" if account_name else "")
    draw.text((margin, margin), title, font=title_font, fill=(0, 0, 0))
    draw.text(
        (margin, margin + 24),
        f"Coverage, week {cov.week} ({cov.monday.isoformat()} .. {last.isoformat()}), "
        f"local time {cov.timezone}, {cov.slot_minutes}-minute slots",
        font=regular,
        fill=(60, 60, 60),
    )

    hours_step = 1
    hour_w = 60 / cov.slot_minutes * cell_w
    while hours_step < 24 and probe.textlength("00:00", font=small) + 10 > hours_step * hour_w:
        hours_step = {1: 2, 2: 3, 3: 4, 4: 6, 6: 12}.get(hours_step, 24)
    y = top
    for klass, class_runs in zip(cov.classes, runs, strict=True):
        who = klass.caller if klass.caller is not None else "anonymous"
        draw.text((margin, y + 3), f"Callers: {klass.label}, e.g. {who}", font=bold, fill=(0, 0, 0))
        y += header_h
        for hour in range(0, 25, hours_step):
            x = left + hour * 60 // cov.slot_minutes * cell_w
            text = f"{hour:02d}:00"
            tw = probe.textlength(text, font=small)
            draw.text((x - tw / 2, y + 1), text, font=small, fill=(80, 80, 80))
            draw.line([(x, y + axis_h - 3), (x, y + axis_h - 1)], fill=(80, 80, 80))
        y += axis_h
        for day, spans in zip(cov.days, class_runs, strict=True):
            label_colour = {"holiday": (200, 0, 0), "weekend": (170, 90, 0)}.get(day.day_type, (0, 0, 0))
            draw.text((margin, y + 3), day.label, font=regular, fill=label_colour)
            for span in spans:
                x0, x1 = left + span.first_slot * cell_w, left + span.end_slot * cell_w
                colour = colours.get(span.scenario, (128, 128, 128))
                _cell_block(image, (x0, y, x1, y + row_h - 1), colour, hatched=span.rule is None)
            for hour in range(1, 24):
                x = left + hour * 60 // cov.slot_minutes * cell_w
                draw.line([(x, y), (x, y + row_h - 2)], fill=(255, 255, 255))
            for span in spans:  # labels last, so that hour lines do not cross them
                x0, x1 = left + span.first_slot * cell_w, left + span.end_slot * cell_w
                colour = colours.get(span.scenario, (128, 128, 128))
                text = span.rule or "default"
                tw = probe.textlength(text, font=cell_font)
                if tw + 8 <= x1 - x0:
                    ink = _ink(colour)
                    draw.text(
                        ((x0 + x1 - tw) / 2, y + 3),
                        text,
                        font=cell_font,
                        fill=ink,
                        stroke_width=2,
                        stroke_fill=colour if ink == (0, 0, 0) else _shade(colour, 0.55),
                    )
            y += row_h
        y += gap

    for line in legend_lines:
        x = margin
        for text, colour, hatched in line:
            _cell_block(image, (x, y + 2, x + 28, y + 16), colour, hatched=hatched)
            draw.rectangle((x, y + 2, x + 28, y + 16), outline=(90, 90, 90))
            draw.text((x + 34, y + 2), text, font=regular, fill=(0, 0, 0))
            x += 34 + int(probe.textlength(text, font=regular)) + 18
        y += 22
    for line_text in rules_lines:
        draw.text((margin, y), line_text, font=small, fill=(60, 60, 60))
        y += 15
    image.save(Path(path), format="PNG")


@lru_cache(maxsize=16)
def _font(size: int, bold: bool) -> Font:
    """DejaVu Sans (covers Cyrillic) if installed, else Pillow's built-in font."""
    from PIL import ImageFont

    name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
    names = [name, "DejaVuSans.ttf"] if bold else [name]
    for candidate in names:
        for directory in FONT_DIRS:
            file = Path(directory) / candidate
            if file.is_file():
                return ImageFont.truetype(str(file), size)
        try:
            return ImageFont.truetype(candidate, size)  # Pillow searches the system fonts
        except OSError:
            continue
    return ImageFont.load_default(size=size)


def _cell_block(
    image: PILImage.Image,
    box: tuple[int, int, int, int],
    colour: tuple[int, int, int],
    hatched: bool,
) -> None:
    """Fill `box` (inclusive) with `colour`; hatched blocks get darker diagonal stripes."""
    from PIL import Image, ImageDraw

    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0 + 1
    if w <= 0 or h <= 0:
        return
    tile = Image.new("RGB", (w, h), colour)
    if hatched:
        dark = _shade(colour, 0.7)
        tile_draw = ImageDraw.Draw(tile)
        for offset in range(-h, w + h, 7):
            tile_draw.line([(offset, h), (offset + h, 0)], fill=dark, width=2)
    image.paste(tile, (x0, y0))


def _shade(colour: tuple[int, int, int], factor: float) -> tuple[int, int, int]:
    r, g, b = colour
    return (int(r * factor), int(g * factor), int(b * factor))


def _ink(colour: tuple[int, int, int]) -> tuple[int, int, int]:
    r, g, b = colour
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 140 else (255, 255, 255)


def _wrap_legend(
    probe: PILImageDraw.ImageDraw,
    items: list[tuple[str, tuple[int, int, int], bool]],
    font: Font,
    width: int,
) -> list[list[tuple[str, tuple[int, int, int], bool]]]:
    lines: list[list[tuple[str, tuple[int, int, int], bool]]] = [[]]
    used = 0
    for item in items:
        need = 34 + int(probe.textlength(item[0], font=font)) + 18
        if lines[-1] and used + need > width:
            lines.append([])
            used = 0
        lines[-1].append(item)
        used += need
    return [line for line in lines if line]


def _wrap_words(probe: PILImageDraw.ImageDraw, text: str, font: Font, width: int) -> list[str]:
    lines: list[str] = []
    current = ""
    for word in text.split(" "):
        trial = f"{current} {word}" if current else word
        if current and probe.textlength(trial, font=font) > width:
            lines.append(current)
            current = word
        else:
            current = trial
    if current:
        lines.append(current)
    return lines
