"""The load-tester kit behind `voffice bench sip`'s mixes: which sipp scenarios of bench/sipp/
play the callers and the operator gateway, which final status every call of a mix must end
with, the numbers file sipp reads with -inf, what the callers' message logs say about each
call, and the plot. Pure parts only: nothing here starts a process (docs/load-testing.md).

A mix is a caller behaviour and an operator gateway behaviour:

callers   plain            waits for the answer, talks, hangs up (any final rejection is ACKed)
          dtmf             keys 1 (RFC 2833) into a prompt (183), then as plain
          cancel-ringing   CANCEL once it rings (180)
          cancel-prompt    CANCEL during a prompt (183)
gateways  answer           180 + 200 at once (bench/sipp/uas-answer.xml, the default)
          answer-after:N   rings N s, then 200
          busy[:N] decline[:N] 503[:N]   486 / 603 / 503, at once or after ringing N s
          no-answer        180, then nothing until a CANCEL

"held" for a mix: every call completed its caller scenario, nothing failed at either end, the
callers offered at least 95% of the rate, and every call's final status for its INVITE was one
the mix expects (`expected_finals`); a mix whose calls are all answered also needs the answers
to come at 95% of the rate, as the default bench does.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from routing.proxy import branch_call_id

ROOT = Path(__file__).resolve().parents[2]
SIPP_DIR = ROOT / "bench" / "sipp"
TALK_MS = 200  # the default bench's talk time (fixed in bench/sipp/uac.xml)

CALLERS = {
    "plain": "uac-plain.xml",
    "dtmf": "uac-dtmf.xml",
    "cancel-ringing": "uac-cancel-ringing.xml",
    "cancel-prompt": "uac-cancel-prompt.xml",
}
GATEWAYS = {
    "answer": "uas-answer.xml",
    "answer-after": "uas-answer-after.xml",
    "busy": "uas-busy.xml",
    "decline": "uas-decline.xml",
    "503": "uas-unavailable.xml",
    "no-answer": "uas-no-answer.xml",
}
REJECT_CODES = {"busy": 486, "decline": 603, "503": 503}
# What a proxy relays for a gateway's final (RFC 3261 16.7: a 503 is not passed on as such; Kamailio's tm relays it as 500).
RELAYED = {503: 500}
NATIVE_NO_ANSWER = 408  # bench/kamailio-baseline.cfg: fr_inv_timer 120 s, then tm's own 408
NATIVE_RING_LIMIT_S = 120.0
# The seed at Wednesday lunch (what the bench's voffice configuration routes): the secretary is rung
# through the gateway in two waves (two attempts) of up to 20 s each, then the menu plays (183
# from the media server): key 1 is voicemail (answered: 200), no key ends with 480.
SEED_RING_SECONDS = 20.0
SEED_WAVES = 2
MENU_SECONDS = 40.0  # the menu prompt, its input timeout and the end, with room to spare
MENU_NO_KEY = 480


class MixError(ValueError):
    pass


@dataclass(frozen=True)
class Gateway:
    kind: str = "answer"  # a key of GATEWAYS
    seconds: float = 0.0  # answer-after: when it answers; busy/decline/503: how long it rings first

    @property
    def scenario(self) -> Path:
        return SIPP_DIR / GATEWAYS[self.kind]

    @property
    def code(self) -> int | None:
        return REJECT_CODES.get(self.kind)

    def set_args(self) -> list[str]:
        ms = str(round(self.seconds * 1000))
        if self.kind == "answer-after":
            return ["-set", "answer_after", ms]
        if self.code is not None and self.seconds > 0:
            return ["-set", "ring", ms]
        return []

    def __str__(self) -> str:
        return f"{self.kind}:{self.seconds:g}" if self.seconds else self.kind


def parse_gateway(text: str) -> Gateway:
    """`answer`, `answer-after:N`, `busy`, `busy:N`, `decline[:N]`, `503[:N]`, `no-answer` (N in seconds)."""
    kind, _, value = text.strip().partition(":")
    if kind not in GATEWAYS:
        raise MixError(f"gateway {text!r}: one of answer, answer-after:N, busy[:N], decline[:N], 503[:N], no-answer")
    if kind in ("answer", "no-answer") and value:
        raise MixError(f"gateway {text!r}: {kind} takes no seconds")
    if kind == "answer-after" and not value:
        raise MixError("gateway answer-after needs the seconds: answer-after:N")
    seconds = 0.0
    if value:
        try:
            seconds = float(value)
        except ValueError:
            raise MixError(f"gateway {text!r}: {value!r} is not a number of seconds") from None
        if not 0 <= seconds <= 600 or not math.isfinite(seconds):
            raise MixError(f"gateway {text!r}: seconds must be within 0..600")
    return Gateway(kind, seconds)


def parse_codes(text: str) -> frozenset[int]:
    """`--expect 200,480`: SIP final status codes."""
    try:
        codes = frozenset(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise MixError(f"expect {text!r}: final status codes separated by commas, e.g. 200,480") from None
    if not codes or any(not 200 <= c <= 699 for c in codes):
        raise MixError(f"expect {text!r}: final status codes (200..699) separated by commas")
    return codes


def expected_finals(config: str, caller: str, gateway: Gateway) -> frozenset[int]:
    """The final status each call's INVITE may end with, for this caller against this gateway,
    through `config`: "baseline" (a native proxy relaying to the gateway: the gateway's final
    reaches the caller) or "voffice" (the seed at Wednesday lunch: the secretary's waves, then
    the menu). Two codes where a race decides (a CANCEL crossing a 200 or a rejection)."""
    if caller not in CALLERS:
        raise MixError(f"caller {caller!r}: one of {', '.join(CALLERS)}")
    voffice = config == "voffice"
    ring_limit = SEED_RING_SECONDS if voffice else NATIVE_RING_LIMIT_S  # then the proxy gives up on the gateway
    answers = gateway.kind == "answer" or (gateway.kind == "answer-after" and gateway.seconds < ring_limit)
    racy = False  # a CANCEL sent 100-200 ms after the 180 may cross the final
    if answers:
        final, ringing, prompt = 200, True, False
        racy = gateway.kind == "answer" or gateway.seconds < 0.5
    elif not voffice:  # the gateway's final, relayed; a gateway that never answers: the proxy's timeout
        final = NATIVE_NO_ANSWER if gateway.code is None else RELAYED.get(gateway.code, gateway.code)
        ringing, prompt = gateway.code is None or gateway.seconds > 0, False
        racy = gateway.code is not None and 0 < gateway.seconds < 0.5
    else:  # every wave fails, the menu plays and ends without a key
        final, prompt = MENU_NO_KEY, True
        ringing = gateway.kind in ("no-answer", "answer-after") or gateway.seconds > 0
    if caller == "dtmf" and prompt:
        return frozenset({200})  # key 1: voicemail answers
    if caller == "cancel-prompt" and prompt:
        return frozenset({487})
    if caller == "cancel-ringing" and ringing:
        return frozenset({487, final}) if racy else frozenset({487})
    return frozenset({final})


@dataclass(frozen=True)
class Mix:
    """What the callers and the gateway do, for every call of a run."""

    caller: str = "plain"
    gateway: Gateway = Gateway()
    talk_ms: int = TALK_MS
    inf: Path | None = None  # numbers;callers for sipp -inf
    expect: frozenset[int] | None = None  # overrides expected_finals
    routing_known: bool = True  # the bench's voffice configuration routes as the seed at Wednesday lunch

    def __post_init__(self) -> None:
        if self.caller not in CALLERS:
            raise MixError(f"caller {self.caller!r}: one of {', '.join(CALLERS)}")
        if self.talk_ms < 0:
            raise MixError("talk must be >= 0 ms")

    @property
    def caller_scenario(self) -> Path:
        return SIPP_DIR / CALLERS[self.caller]

    def caller_set_args(self) -> list[str]:
        return ["-set", "talk", str(self.talk_ms)]

    def expected(self, config: str) -> frozenset[int]:
        if self.expect is not None:
            return self.expect
        return expected_finals(config, self.caller, self.gateway)

    def all_answered(self, config: str) -> bool:
        return self.expected(config) == frozenset({200})

    def reaches_menu(self) -> bool:
        """Whether voffice's calls may reach a media server (then the bench starts one)."""
        if self.inf is not None or not self.routing_known:
            return True
        g = self.gateway
        return not (g.kind == "answer" or (g.kind == "answer-after" and g.seconds < SEED_RING_SECONDS))

    def call_seconds(self, config: str) -> float:
        """A generous bound on one call's length (for sipp's timeouts, not a figure)."""
        g = self.gateway
        bound = self.talk_ms / 1000 + 5
        if g.kind == "answer-after":
            bound += g.seconds
        elif g.code is not None:
            bound += g.seconds
        if config == "voffice" and self.reaches_menu():
            bound += SEED_WAVES * max(g.seconds, SEED_RING_SECONDS if g.kind in ("no-answer", "answer-after") else 0) + MENU_SECONDS
        elif config == "baseline" and g.kind in ("no-answer", "answer-after"):
            bound += NATIVE_RING_LIMIT_S
        return bound

    def describe(self) -> str:
        caller = f"{self.caller} ({self.caller_scenario.name} {' '.join(self.caller_set_args())})"
        gateway = f"{self.gateway} ({self.gateway.scenario.name}{' ' + ' '.join(self.gateway.set_args()) if self.gateway.set_args() else ''})"
        numbers = f", numbers and callers from {self.inf} (-inf)" if self.inf else ""
        return f"caller {caller}, operator gateway {gateway}{numbers}"


# --- numbers files for sipp -inf --------------------------------------------------------------

ORDERS = ("SEQUENTIAL", "RANDOM")
_NUMBER = re.compile(r"\+?[0-9]{3,20}|anonymous")


def write_numbers_csv(path: Path, pairs: Iterable[tuple[str, str]], order: str = "SEQUENTIAL") -> int:
    """Write a sipp injection file: `SEQUENTIAL` (or `RANDOM`), then `number;caller` per line.
    Returns the number of lines written."""
    if order not in ORDERS:
        raise MixError(f"order {order!r}: SEQUENTIAL or RANDOM")
    lines = []
    for number, caller in pairs:
        for value in (number, caller):
            if not _NUMBER.fullmatch(value):
                raise MixError(f"{value!r} is not a phone number for a numbers file (digits, an optional +)")
        lines.append(f"{number};{caller}")
    if not lines:
        raise MixError("no numbers to write")
    path.write_text(f"{order}\n# number;caller (sipp -inf: [field0] is the number called, [field1] the caller)\n" + "\n".join(lines) + "\n")
    return len(lines)


def read_numbers_csv(path: Path) -> tuple[str, list[tuple[str, str]]]:
    """The order line and the (number, caller) pairs of a numbers file; MixError if it is not one."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise MixError(f"{path}: {exc.strerror}") from None
    lines = text.splitlines()
    if not lines or lines[0].strip() not in ("SEQUENTIAL", "RANDOM", "USER"):
        raise MixError(f"{path}: the first line must be SEQUENTIAL, RANDOM or USER")
    pairs = []
    for i, line in enumerate(lines[1:], 2):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split(";")
        if len(fields) < 2 or not all(_NUMBER.fullmatch(f.strip()) for f in fields[:2]):
            raise MixError(f"{path}:{i}: expected number;caller, got {line!r}")
        pairs.append((fields[0].strip(), fields[1].strip()))
    if not pairs:
        raise MixError(f"{path}: no number;caller lines")
    return lines[0].strip(), pairs


def number_pairs(numbers: Sequence[str], callers: Sequence[str]) -> list[tuple[str, str]]:
    """Every number once, the callers taken in turn."""
    if not numbers or not callers:
        raise MixError("need at least one number and one caller")
    return [(number, callers[i % len(callers)]) for i, number in enumerate(numbers)]


def inf_scenario(scenario: Path, folder: Path) -> Path:
    """A copy of a caller scenario that reads the number and the caller from the -inf file
    ([field0], [field1]) instead of -s and -key caller."""
    text = scenario.read_text()
    if "[service]" not in text or "[caller]" not in text:
        raise MixError(f"{scenario}: no [service] and [caller] to take from the numbers file")
    out = folder / f"{scenario.stem}-inf.xml"
    out.write_text(text.replace("[service]", "[field0]").replace("[caller]", "[field1]"))
    return out


# --- what the callers saw -----------------------------------------------------------------------


@dataclass
class CallTrace:
    invite_at: float  # the first INVITE sent (epoch seconds)
    final: int | None = None  # the INVITE's first final status
    final_at: float | None = None

    @property
    def answered(self) -> bool:
        return self.final == 200

    @property
    def setup_ms(self) -> float | None:
        return None if self.final_at is None or not self.answered else (self.final_at - self.invite_at) * 1000


@dataclass(frozen=True)
class ShortMessage:
    at: float  # epoch seconds
    sent: bool  # S (sent by this sipp) or R (received)
    call_id: str
    first_line: str


def invite_messages(folder: Path) -> Iterator[ShortMessage]:
    """The INVITE transactions' messages (the requests and their replies) of the sipp
    -trace_shortmsg logs in `folder`: one line per message, tab separated: date, time, epoch
    seconds, S|R, Call-ID, CSeq, first line."""
    for path in folder.glob("*_shortmessages.log"):
        with path.open(errors="replace") as f:
            for line in f:
                parts = line.rstrip("\n").split("\t")
                if len(parts) < 7 or not parts[5].endswith(" INVITE"):
                    continue
                try:
                    at = float(parts[2])
                except ValueError:
                    continue
                yield ShortMessage(at, parts[3] == "S", parts[4], parts[6])


def read_calls(folder: Path) -> list[CallTrace]:
    """Each call of the callers' logs in `folder`, in INVITE order."""
    calls: dict[str, CallTrace] = {}
    for message in invite_messages(folder):
        if message.sent and message.first_line.startswith("INVITE "):
            calls.setdefault(message.call_id, CallTrace(message.at))
        elif not message.sent and message.first_line.startswith("SIP/2.0 ") and message.call_id in calls:
            call = calls[message.call_id]
            code = message.first_line[8:11]
            if call.final is None and code.isdigit() and int(code) >= 200:
                call.final, call.final_at = int(code), message.at
    return sorted(calls.values(), key=lambda c: c.invite_at)


def first_invites(folder: Path, sent: bool) -> dict[str, str]:
    """Call-ID -> Request-URI user of the first INVITE each call sent (a caller's log) or
    received (an operator gateway's log: operator branches carry a Call-ID of their own,
    routing/proxy/branch_call_id.py, mapped back to the caller's)."""
    out: dict[str, str] = {}
    for message in invite_messages(folder):
        if message.sent == sent and message.first_line.startswith("INVITE sip:"):
            out.setdefault(branch_call_id.of_caller(message.call_id), message.first_line[len("INVITE sip:"):].split("@", 1)[0])
    return out


def finals_count(calls: Iterable[CallTrace]) -> dict[str, int]:
    """{"200": n, "487": n, ..., "none": n} for the calls' finals."""
    out: dict[str, int] = {}
    for call in calls:
        key = "none" if call.final is None else str(call.final)
        out[key] = out.get(key, 0) + 1
    return dict(sorted(out.items()))


def format_finals(finals: Mapping[str, int]) -> str:
    """`200:3 487:17 none:1`: by status code, calls without a final last."""
    ordered = sorted(finals.items(), key=lambda item: (not item[0].isdigit(), item[0]))
    return " ".join(f"{code}:{n}" for code, n in ordered) or "-"


def rate(times: Sequence[float]) -> float:
    """Events per second between the first and the last of `times`."""
    if len(times) >= 2 and times[-1] > times[0]:
        return (len(times) - 1) / (times[-1] - times[0])
    return 0.0


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """The `fraction` percentile of unsorted values (None for none)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def per_second(calls: Sequence[CallTrace]) -> list[list[float | None]]:
    """[second (epoch of its start), INVITEs sent, 200s received, INVITE->200 p50 ms, p99 ms] for
    every second from the first INVITE (seconds counted from it) to the last final."""
    if not calls:
        return []
    first = min(c.invite_at for c in calls)
    last = max([c.final_at for c in calls if c.final_at is not None] + [c.invite_at for c in calls])
    offered = [0] * (math.floor(last - first) + 1)
    answered: list[list[float]] = [[] for _ in offered]
    for call in calls:
        offered[math.floor(call.invite_at - first)] += 1
        if call.final_at is not None and call.setup_ms is not None:
            answered[math.floor(call.final_at - first)].append(call.setup_ms)
    return [[first + i, float(offered[i]), float(len(answered[i])), percentile(answered[i], 0.5), percentile(answered[i], 0.99)]
            for i in range(len(offered))]


# --- the plot -----------------------------------------------------------------------------------

COLOURS = {"baseline": "#4c72b0", "voffice": "#dd8452"}


def plot_run(result: Mapping[str, Any], path: Path, size: tuple[int, int] = (1200, 800)) -> Path:
    """Two panels over the run, for each configuration that ran: calls per second offered
    (INVITEs sent, dashed) and answered (200s received, solid) with each step's rate (thin);
    INVITE->200 p50 (solid) and p99 (dotted) per second, log scale. Time is seconds since each
    configuration's first call (the configurations run one after the other)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dpi = 100
    fig, (cps_ax, rtt_ax) = plt.subplots(2, 1, figsize=(size[0] / dpi, size[1] / dpi), dpi=dpi, sharex=True)
    answered_any = False
    for name in ("baseline", "voffice"):
        run = result.get(name)
        steps = [step for step in (run or {}).get("steps", []) if step.get("series")]
        if not steps:
            continue
        t0 = steps[0]["series"][0][0]
        colour = COLOURS.get(name, "black")
        for i, step in enumerate(steps):
            series = step["series"]
            x = [row[0] - t0 for row in series]
            first = i == 0
            cps_ax.plot([x[0], x[0] + step["calls"] / step["cps"]], [step["cps"], step["cps"]], color=colour, linewidth=0.8,
                        alpha=0.5, label=f"{name} rate asked" if first else None)
            edges = [*x, x[-1] + 1]  # each count holds for its whole second
            cps_ax.plot(edges, [row[1] for row in series] + [series[-1][1]], color=colour, linestyle="--", linewidth=1,
                        drawstyle="steps-post", label=f"{name} offered" if first else None)
            cps_ax.plot(edges, [row[2] for row in series] + [series[-1][2]], color=colour, linewidth=1.5,
                        drawstyle="steps-post", label=f"{name} answered" if first else None)
            p50 = [(xi, row[3]) for xi, row in zip(x, series, strict=True) if row[3] is not None]
            p99 = [(xi, row[4]) for xi, row in zip(x, series, strict=True) if row[4] is not None]
            if p50:
                answered_any = True
                rtt_ax.plot([a for a, _ in p50], [b for _, b in p50], color=colour, linewidth=1.5, marker=".",
                            label=f"{name} p50" if first else None)
                rtt_ax.plot([a for a, _ in p99], [b for _, b in p99], color=colour, linestyle=":", linewidth=1.5, marker=".",
                            label=f"{name} p99" if first else None)
    cps_ax.set_ylabel("calls per second")
    cps_ax.set_title(str(result.get("title") or "voffice bench sip"), fontsize=10)
    rtt_ax.set_ylabel("INVITE -> 200 (ms)")
    rtt_ax.set_xlabel("seconds since the configuration's first call")
    if answered_any:
        from matplotlib.ticker import FuncFormatter

        rtt_ax.set_yscale("log")
        plain = FuncFormatter(lambda value, _pos: f"{value:g}")
        rtt_ax.yaxis.set_major_formatter(plain)
        rtt_ax.yaxis.set_minor_formatter(plain)
    else:
        rtt_ax.text(0.5, 0.5, "no call answered", transform=rtt_ax.transAxes, ha="center", va="center")
    for ax in (cps_ax, rtt_ax):
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
