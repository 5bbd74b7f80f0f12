"""The report of a safety check (安否確認): response rate by area and by channel, the
median answer time, the time until 80% and 95% answered, who was never reached, the
answer-rate curve next to earlier drills', and its exports (CSV and Excel).

Every figure counts only the asks of residents the viewer may see (outreach.safety,
which asks watch.access), and exports carry no sensitive field (watch.access.SENSITIVE_FIELDS
are never read here): area, name, and what happened to the question.
"""
import csv
import io
import math
import statistics
from datetime import datetime, timedelta

from django.db.models import Count
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from notifications.delivery import tenant_time_zone
from outreach.answers import STAFF
from outreach.models import Answer, Ask, AskAttempt, SafetyCheck
from outreach.safety import asks_seen_by, progress
from watch.models import Channel

# The chart's geometry (SVG user units); the page's script draws with the same numbers.
CHART = {"width": 640, "height": 260, "left": 48, "right": 16, "top": 16, "bottom": 40}
MAX_POINTS = 240  # points per curve: enough for a smooth line, few enough for a page
COMPARED = 4  # earlier drills drawn next to this one
MILESTONES = (0.8, 0.95)
NEVER_REACHED_SHOWN = 500  # on the page; the exports have everyone
# Line styles of the compared curves: colour and dash, so they differ without colour too.
STYLES = [("#0b5cad", ""), ("#b3261e", "6 4"), ("#2e7d32", "2 3"), ("#6a1b9a", "10 3 2 3"), ("#8d6e00", "1 5")]


# Curves ---------------------------------------------------------------------------------

def answer_data(check: SafetyCheck, user) -> tuple[int, list[datetime], list[float]]:
    """(how many the viewer's part of the check asked, their answer times in order, each
    answer's wait in seconds from its first question or the start): one count and one
    query, kept on the check object for the rest of the request."""
    cache = check.__dict__.setdefault("_answer_data", {})
    key = getattr(user, "pk", None)
    if key not in cache:
        asks = asks_seen_by(user, check)
        rows = list(asks.filter(state=Ask.State.ANSWERED, answered_at__isnull=False)
                    .values_list("answered_at", "first_sent_at"))
        times = sorted(answered for answered, _sent in rows)
        waits = [max(0.0, (answered - (sent or check.started_at)).total_seconds())
                 for answered, sent in rows if (sent or check.started_at)]
        cache[key] = (asks.count(), times, waits)
    return cache[key]


def answer_times(check: SafetyCheck, user) -> tuple[int, list[datetime]]:
    """(how many the viewer's part of the check asked, their answer times in order)."""
    total, times, _waits = answer_data(check, user)
    return total, times


def curve(check: SafetyCheck, user) -> list[tuple[float, float]]:
    """The share answered against minutes since the start, as steps (minute, share):
    one point per minute in which answers came, thinned to MAX_POINTS."""
    if check.started_at is None:
        return []
    total, times = answer_times(check, user)
    if not total:
        return []
    points: dict[float, float] = {0.0: 0.0}
    for count, at in enumerate(times, start=1):
        minute = max(0.0, round((at - check.started_at).total_seconds() / 60, 1))
        points[minute] = count / total  # the last answer of a tenth of a minute wins
    ordered = sorted(points.items())
    if len(ordered) > MAX_POINTS:
        step = math.ceil(len(ordered) / MAX_POINTS)
        ordered = ordered[::step] + ([ordered[-1]] if (len(ordered) - 1) % step else [])
    return [(m, round(s, 4)) for m, s in ordered]


def x_max_of(curves: list[list[tuple[float, float]]], at_least: float = 10.0) -> float:
    """The chart's last minute: a little past the latest point of any curve."""
    latest = max([c[-1][0] for c in curves if c] or [0.0])
    return max(at_least, math.ceil(latest * 1.05))


def svg_points(points: list[tuple[float, float]], x_max: float) -> str:
    """The curve as the `points` of an SVG polyline in CHART's frame (steps: the share
    holds until the next answer)."""
    inner_w = CHART["width"] - CHART["left"] - CHART["right"]
    inner_h = CHART["height"] - CHART["top"] - CHART["bottom"]

    def xy(minute, share):
        return (f"{CHART['left'] + inner_w * min(minute, x_max) / x_max:.1f},"
                f"{CHART['top'] + inner_h * (1 - share):.1f}")

    out, previous = [], None
    for minute, share in points:
        if previous is not None:
            out.append(xy(minute, previous))
        out.append(xy(minute, share))
        previous = share
    return " ".join(out)


def axes(x_max: float) -> dict:
    """Tick marks and labels of the chart: shares every 20%, minutes at a round step."""
    inner_w = CHART["width"] - CHART["left"] - CHART["right"]
    inner_h = CHART["height"] - CHART["top"] - CHART["bottom"]
    step = next(s for s in (1, 2, 5, 10, 15, 30, 60, 120, 240, 480, 720, 1440, 2880, 10080)
                if x_max / s <= 8)
    xs = [{"x": round(CHART["left"] + inner_w * m / x_max, 1), "label": minutes_label(m)}
          for m in range(0, int(x_max) + 1, step)]
    ys = [{"y": round(CHART["top"] + inner_h * (1 - p / 100), 1), "label": f"{p}%"} for p in range(0, 101, 20)]
    return {"xs": xs, "ys": ys, "x0": CHART["left"], "x1": CHART["width"] - CHART["right"],
            "y0": CHART["top"], "y1": CHART["height"] - CHART["bottom"],
            "label_y": CHART["height"] - 6, "mid_x": CHART["left"] + inner_w / 2, **CHART}


def minutes_label(minutes: int) -> str:
    if minutes and minutes % 60 == 0:
        return ngettext("%(count)d hour", "%(count)d hours", minutes // 60) % {"count": minutes // 60}
    return ngettext("%(count)d min", "%(count)d min", minutes) % {"count": minutes}


def chart(series: list[dict], at_least: float = 10.0) -> dict:
    """What the template draws: each series' polyline, style and label, and the axes
    (minutes up to `at_least` at least: the progress page runs to the deadline)."""
    x_max = x_max_of([s["points"] for s in series], at_least)
    for n, entry in enumerate(series):
        entry["colour"], entry["dash"] = STYLES[n % len(STYLES)]
        entry["svg"] = svg_points(entry["points"], x_max)
    return {"series": series, "x_max": x_max, "axes": axes(x_max)}


# Figures --------------------------------------------------------------------------------

def duration_text(value: timedelta | None) -> str:
    """A duration in words ("12 min 5 s"), or "not reached"."""
    if value is None:
        return _("not reached")
    seconds = max(0, round(value.total_seconds()))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return _("%(hours)d h %(minutes)d min") % {"hours": hours, "minutes": minutes}
    if minutes:
        return _("%(minutes)d min %(seconds)d s") % {"minutes": minutes, "seconds": seconds}
    return _("%(seconds)d s") % {"seconds": seconds}


def time_until(check: SafetyCheck, total: int, times: list[datetime], share: float) -> timedelta | None:
    """From the start until `share` of those asked had answered; None if never."""
    needed = math.ceil(total * share - 1e-9)
    if not total or check.started_at is None or needed > len(times):
        return None
    return max(timedelta(0), times[needed - 1] - check.started_at)


def median_answer_time(check: SafetyCheck, user) -> timedelta | None:
    """The median of each answer's time from its first question (or from the start)."""
    _total, _times, waits = answer_data(check, user)
    return timedelta(seconds=statistics.median(waits)) if waits else None


def via_label(via: str) -> str:
    if via == STAFF:
        return _("Recorded by a volunteer or staff")
    return str(Channel(via).label) if via in Channel.values else _("Other")


def by_channel(check: SafetyCheck, user) -> list[dict]:
    """Per channel: how many were reached on it, how many answered on it, the rate."""
    asks = asks_seen_by(user, check)
    reached = dict(AskAttempt.objects.filter(ask__in=asks.values("pk"), ok=True).values("channel")
                   .annotate(n=Count("ask", distinct=True)).values_list("channel", "n"))
    answered = dict(asks.filter(state=Ask.State.ANSWERED).values("answered_via").annotate(n=Count("pk"))
                    .values_list("answered_via", "n"))
    total_answered = sum(answered.values())
    order = [*check.channels, *(c for c in sorted(set(reached) | set(answered)) if c not in check.channels)]
    rows = []
    for via in dict.fromkeys(order):
        tried, got = reached.get(via, 0), answered.get(via, 0)
        if not (tried or got):
            continue
        rows.append({"via": via, "label": via_label(via), "reached": tried, "answered": got,
                     "rate": round(got / tried, 4) if tried else None,
                     "share_of_answers": round(got / total_answered, 4) if total_answered else 0.0})
    return rows


def never_reached(check: SafetyCheck, user, limit: int | None = None) -> list[Ask]:
    """Asks of residents the viewer may see whom no channel reached, by block then name
    (the first `limit` of them)."""
    asks = (asks_seen_by(user, check).filter(reached=False).select_related("resident", "area")
            .only("pk", "state", "answer", "resident_id", "area_id", "resident__name", "resident__furigana",
                  "area__name", "area__full_name")
            .order_by("area__full_name", "resident__furigana", "resident__name", "pk"))
    return list(asks[:limit] if limit else asks)


def earlier_drills(check: SafetyCheck, limit: int = COMPARED) -> list[SafetyCheck]:
    """The drills started before this check (not cancelled), the latest first."""
    if check.started_at is None:
        return []
    return list(SafetyCheck.objects.filter(kind=SafetyCheck.Kind.DRILL, started_at__lt=check.started_at)
                .exclude(state=SafetyCheck.State.CANCELLED).exclude(pk=check.pk).order_by("-started_at")[:limit])


def series_label(check: SafetyCheck) -> str:
    when = check.started_at.astimezone(tenant_time_zone()).strftime("%Y/%m/%d") if check.started_at else ""
    return f"{check.title} ({when})" if when else check.title


def comparison(check: SafetyCheck, user) -> dict:
    """This check's curve and the earlier drills' on one chart (this one first)."""
    series = []
    for n, other in enumerate([check, *earlier_drills(check)]):
        points = curve(other, user)
        total, times = answer_times(other, user)
        series.append({"check": other, "label": series_label(other), "current": n == 0, "points": points,
                       "share": points[-1][1] if points else 0.0,
                       "t80": duration_text(time_until(other, total, times, 0.8))})
    return chart(series)


def report(check: SafetyCheck, user) -> dict:
    """Every figure of the report page and the exports, for `user`."""
    figures = progress(check, user)
    total, times = answer_times(check, user)
    areas = [{**row, "rate": round(row["answered"] / row["total"], 4) if row["total"] else 0.0}
             for row in figures["areas"]]
    until = {share: time_until(check, total, times, share) for share in MILESTONES}
    median = median_answer_time(check, user)
    return {"progress": figures, "totals": figures["totals"], "areas": areas, "channels": by_channel(check, user),
            "median": median, "median_text": duration_text(median),
            "t80": until[0.8], "t95": until[0.95],
            "t80_text": duration_text(until[0.8]), "t95_text": duration_text(until[0.95]),
            "never_reached": never_reached(check, user, NEVER_REACHED_SHOWN),
            "never_reached_count": asks_seen_by(user, check).filter(reached=False).count()}


# Exports --------------------------------------------------------------------------------

def export_headers() -> list[str]:
    return [_("Area"), _("Resident"), _("State"), _("Answer"), _("Answered via"), _("Answered at"),
            _("After the deadline"), _("Reached by a channel"), _("First asked at")]


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def cell_text(value):
    """A text that a spreadsheet would run as a formula (「=HYPERLINK(…)」 typed as a name)
    is kept as text, with a leading apostrophe; numbers and other texts are unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def _local(value: datetime | None, tz=None) -> str:
    """A time in the tenant's time zone, as spreadsheets read it."""
    return value.astimezone(tz or tenant_time_zone()).strftime("%Y-%m-%d %H:%M:%S") if value else ""


def export_rows(check: SafetyCheck, user) -> list[list]:
    """One row per resident the viewer may see: no address, phone or health field."""
    asks = (asks_seen_by(user, check)
            .order_by("area__full_name", "resident__furigana", "resident__name", "pk")
            .values_list("area__full_name", "area__name", "resident__name", "state", "answer", "answered_via",
                         "answered_at", "late", "reached", "first_sent_at"))
    yes, no, tz = _("yes"), _("no"), tenant_time_zone()
    states = {value: str(label) for value, label in Ask.State.choices}
    answers = {value: str(label) for value, label in Answer.choices}
    vias: dict[str, str] = {}
    rows = []
    for full_name, name, resident, state, answer, via, answered_at, late, reached, sent in asks.iterator(2000):
        if via and via not in vias:
            vias[via] = via_label(via)
        rows.append([cell_text(full_name or name), cell_text(resident), states.get(state, state),
                     answers.get(answer, ""), vias.get(via, ""), _local(answered_at, tz), yes if late else "",
                     yes if reached else no, _local(sent, tz)])
    return rows


def summary_rows(check: SafetyCheck, figures: dict) -> list[list]:
    totals = figures["totals"]
    return [
        [_("Safety check"), cell_text(check.title)],
        [_("Kind"), str(SafetyCheck.Kind(check.kind).label)],
        [_("Started"), _local(check.started_at)],
        [_("Deadline"), _local(check.deadline)],
        [_("Asked"), totals["total"]],
        [_("Answered"), totals["answered"]],
        [_("Response rate"), totals["answered_share"]],
        [_("Safe"), totals["safe"]],
        [_("Need help"), totals["need_help"]],
        [_("No answer"), totals["silent"]],
        [_("Median answer time (seconds)"), round(figures["median"].total_seconds()) if figures["median"] else ""],
        [_("Time until 80% answered (seconds)"), round(figures["t80"].total_seconds()) if figures["t80"] else ""],
        [_("Time until 95% answered (seconds)"), round(figures["t95"].total_seconds()) if figures["t95"] else ""],
    ]


def export_csv(check: SafetyCheck, user) -> bytes:
    """UTF-8 with a byte-order mark and CRLF lines, so Excel opens the Japanese right."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(export_headers())
    writer.writerows(export_rows(check, user))
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def export_xlsx(check: SafetyCheck, user) -> bytes:
    """A workbook: the summary (with areas and channels) and one row per resident;
    written row by row (write-only), so 50,000 residents stay a few seconds."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font

    figures = report(check, user)
    book = Workbook(write_only=True)
    bold = Font(bold=True)

    def heading(sheet, values):
        cells = [WriteOnlyCell(sheet, value=value) for value in values]
        for cell in cells:
            cell.font = bold
        sheet.append(cells)

    summary = book.create_sheet(_("Summary")[:31])
    summary.column_dimensions["A"].width = 36
    for row in summary_rows(check, figures):
        summary.append(row)
    summary.append([])
    heading(summary, [_("Area"), _("Asked"), _("Answered"), _("Response rate"), _("Safe"), _("Need help")])
    for area in figures["areas"]:
        summary.append([cell_text(area["area"]), area["total"], area["answered"], area["rate"], area["safe"],
                        area["need_help"]])
    summary.append([])
    heading(summary, [_("Channel"), _("Reached"), _("Answered"), _("Response rate")])
    for row in figures["channels"]:
        summary.append([row["label"], row["reached"], row["answered"], row["rate"] if row["rate"] is not None else ""])
    people = book.create_sheet(_("Residents")[:31])
    people.freeze_panes = "A2"
    for column, width in zip("ABCDEFGHI", (36, 20, 22, 18, 18, 20, 10, 12, 20), strict=True):
        people.column_dimensions[column].width = width
    heading(people, export_headers())
    for row in export_rows(check, user):
        people.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
