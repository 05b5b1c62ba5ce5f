"""Cron expressions in words, for people reading ``batchwork crons`` and the dashboard.

Pure and best-effort: the common shapes read naturally ("every 5 seconds", "at 02:30 on
Monday to Friday"); anything else is described field by field, never wrongly.
"""

from __future__ import annotations

import re

ALIASES = {
    "@yearly": "at 00:00 on 1 January",
    "@annually": "at 00:00 on 1 January",
    "@monthly": "at 00:00 on day 1 of the month",
    "@weekly": "at 00:00 on Sunday",
    "@daily": "at 00:00 every day",
    "@midnight": "at 00:00 every day",
    "@hourly": "every hour at minute 0",
}
DAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
DAY_ABBR = {d[:3].upper(): i for i, d in enumerate(DAYS[:7])}
MONTHS = [
    "January", "February", "March", "April", "May", "June", "July", "August",
    "September", "October", "November", "December",
]  # fmt: skip
MONTH_ABBR = {m[:3].upper(): i + 1 for i, m in enumerate(MONTHS)}
ORDINALS = {1: "1st", 2: "2nd", 3: "3rd", 4: "4th", 5: "5th"}
_NUMBER = re.compile(r"^\d+$")
_STEP = re.compile(r"^\*/(\d+)$")


def describe_cron(expression: str) -> str:
    """Describe a 5-field (or leading-seconds 6-field) cron expression in English.

    Example::

        describe_cron("*/5 * * * * *")   # 'every 5 seconds'
        describe_cron("30 2 * * 1-5")    # 'at 02:30 on Monday to Friday'
    """
    text = expression.strip()
    if text.lower() in ALIASES:
        return ALIASES[text.lower()]
    fields = text.split()
    if len(fields) == 5:
        fields = ["0", *fields]
    if len(fields) != 6:
        return f"cron {text}"
    second, minute, hour, dom, month, dow = fields
    return _join(_time(second, minute, hour), _days(dom, month, dow))


def _join(time: str, days: str) -> str:
    if not days:
        return time if time.startswith("every") else f"{time} every day"
    return f"{time} {days}"


def _time(second: str, minute: str, hour: str) -> str:
    if minute == "*" and hour == "*":
        if second == "*":
            return "every second"
        if step := _STEP.match(second):
            return _every(int(step[1]), "second")
    if second == "0" and hour == "*":
        if minute == "*":
            return "every minute"
        if step := _STEP.match(minute):
            return _every(int(step[1]), "minute")
        if _NUMBER.match(minute):
            return f"every hour at minute {int(minute)}"
    if _NUMBER.match(second) and _NUMBER.match(minute) and _NUMBER.match(hour):
        clock = f"{int(hour):02d}:{int(minute):02d}"
        return f"at {clock}" + (f":{int(second):02d}" if second != "0" else "")
    parts = [f"second {second}"] if second != "0" else []
    parts += [f"minute {minute}", f"hour {hour}"]
    return "at " + ", ".join(parts)


def _every(n: int, unit: str) -> str:
    return f"every {unit}" if n == 1 else f"every {n} {unit}s"


def _days(dom: str, month: str, dow: str) -> str:
    parts = []
    if dom != "*" and dom != "?":
        parts.append("on the last day of the month" if dom == "L" else f"on day {dom} of the month")
    if dow != "*" and dow != "?":
        parts.append("on " + _weekdays(dow))
    if month != "*":
        parts.append("in " + _list(month, _month_name))
    return " ".join(parts)


def _weekdays(field: str) -> str:
    if "#" in field:
        day, _, nth = field.partition("#")
        if nth.isdigit() and int(nth) in ORDINALS:
            return f"the {ORDINALS[int(nth)]} {_day_name(day)} of the month"
    if field.endswith("L") and len(field) > 1:
        return f"the last {_day_name(field[:-1])} of the month"
    return _list(field, _day_name)


def _list(field: str, name: object) -> str:
    assert callable(name)
    words = []
    for part in field.split(","):
        low, dash, high = part.partition("-")
        if dash and "/" not in part:
            words.append(f"{name(low)} to {name(high)}")
        else:
            words.append(name(part))
    return ", ".join(words)


def _day_name(token: str) -> str:
    if _NUMBER.match(token) and int(token) < len(DAYS):
        return DAYS[int(token)]
    if token.upper() in DAY_ABBR:
        return DAYS[DAY_ABBR[token.upper()]]
    return f"weekday {token}"


def _month_name(token: str) -> str:
    if _NUMBER.match(token) and 1 <= int(token) <= 12:
        return MONTHS[int(token) - 1]
    if token.upper() in MONTH_ABBR:
        return MONTHS[MONTH_ABBR[token.upper()] - 1]
    return f"month {token}"
