"""How stored values read on a page: routes decoded where that is safe, invisible characters
shown, times relative to the page, counts, shares and latencies."""

import calendar
import html
import re
import time
import unicodedata
import urllib.parse

from .items import LATENCY_BOUNDS

CHART_LABEL = 80  # characters of a route in a chart label
# Characters that reorder or hide text (bidi controls, zero-width...), shown as code points.
INVISIBLE = {"Cf", "Zl", "Zp", "Cc"}


def visible(text, mark):
    escaped = html.escape(text)
    if text.isascii() and text.isprintable():
        return escaped
    return "".join(
        mark % f"U+{ord(c):04X}" if unicodedata.category(c) in INVISIBLE else c for c in escaped
    )


# A stored route escapes every non-ASCII character (route_of): runs of such escapes.
UTF8_ESCAPES = re.compile(r"(?:%[89A-Fa-f][0-9A-Fa-f])+")
# Characters that hide, reorder or blur text, and those outside UTF-8: kept escaped.
KEPT_ESCAPED = INVISIBLE | {"Cn", "Co", "Cs", "Zs"}


def readable(route):
    """The route as people write it: "/caf%C3%A9" reads "/café". Only escapes of non-ASCII
    characters are decoded: an ASCII one (%2F, %20, %25) decoded would read as another
    route. Bytes that are not UTF-8, invisible or bidi characters, spaces, and a combining
    mark that would sit on the "/" before it stay as stored."""
    if "%" not in route:
        return route

    def decode(match):
        text = bytes.fromhex(match[0].replace("%", "")).decode("utf-8", "surrogateescape")
        out = []
        for c in text:
            kind = unicodedata.category(c)
            after = out[-1] if out else route[: match.start()][-1:]
            if kind in KEPT_ESCAPED or (kind[0] == "M" and after in ("/", "")):
                raw = c.encode("utf-8", "surrogateescape")
                out.append("".join(f"%{byte:02X}" for byte in raw))
            else:
                out.append(c)
        return "".join(out)

    return UTF8_ESCAPES.sub(decode, route)


def shown(route, limit=None):
    """A route as readable() shows it, at most `limit` characters (a chart label: the table
    below shows it whole); its stored form on hover when it reads otherwise."""
    text = readable(route)
    cut = limit is not None and len(text) > limit
    hover = f' title="{visible(route, "[%s]")}"' if cut or text != route else ""
    body = visible(text[:limit] if cut else text, "<span class=cf>%s</span>")
    return f'<bdi dir="ltr"{hover}>{body}</bdi>' + ("\u2026" if cut else "")


def label(route):
    return shown(route, CHART_LABEL)


def stored_seconds(text):
    """Seconds since the epoch of a stored UTC time ("2026-12-01T03:00:00Z"), or None."""
    try:
        return calendar.timegm(time.strptime(text or "", "%Y-%m-%dT%H:%M:%SZ"))
    except ValueError:
        return None


def ago(seconds):
    if seconds < 60:
        return "just now" if seconds < 10 else f"{int(seconds)} s ago"
    for unit, size in (("day", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            n = int(seconds // size)
            return f"{n} {unit}{'s' if unit == 'day' and n != 1 else ''} ago"


def when(text, now):
    """A stored time as "3 min ago", with the UTC time on hover, computed here (no script)."""
    stamp = stored_seconds(text)
    if stamp is None:
        return html.escape(text or "")
    utc = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(stamp))
    shown_as = ago(now - stamp) if stamp <= now else f"at {utc[:16]} UTC"
    return f'<time datetime="{html.escape(text)}" title="{utc}">{shown_as}</time>'


def plural(number, word):
    return word if number == 1 else word + "s"


def route_link(route, text):
    """A link to the route's own page (its hits over time)."""
    href = html.escape("?route=" + urllib.parse.quote(route, safe="/"), quote=True)
    return f'<a href="{href}">{text}</a>'


def percent(part, whole):
    return f"{100 * part / whole:.1f}%" if whole else "-"


def milliseconds(value):
    """A latency as shown: a percentile's bucket bound is 'at most' it; None is past 30 s."""
    if value is None:
        return f"&gt;{LATENCY_BOUNDS[-1]:,} ms"
    return f"{value:,.1f} ms" if isinstance(value, float) else f"\u2264{value:,} ms"
