"""The HTML pages: the dashboard (front page, a route's page, paging, stale routes), the
clients view and error pages. One stylesheet, allowed by its hash in the CSP."""

import base64
import datetime
import hashlib
import html
import time
from http import HTTPStatus

from .charts import answers_chart, answers_heading, ranked_bars, series_chart
from .items import DEFAULT_MIN_ANSWERS, TOP_LIMIT, ordered
from .parsing import DEFAULT_LIMIT, DEFAULT_STALE_DAYS, MAX_BACK, MAX_BACK_CHARS, decode_token
from .settings import CLIENTS_ON, STATS_ROUTE
from .text import (
    label,
    milliseconds,
    percent,
    plural,
    readable,
    route_link,
    shown,
    stored_seconds,
    visible,
    when,
)
from .usage import usage_link

STALE_CHOICES = (1, 7, 30, 90)


def overflow_note(overflow):
    if not overflow:
        return ""
    taken, cap = overflow["routes"], overflow["maxRoutes"]
    state = "reached" if overflow["reached"] else f"{taken:,} of {cap:,} routes taken"
    return (
        f"<p class=note><b>MaxRoutes {cap:,}: {state}.</b> Past it, every new route counts"
        f" as {shown(overflow['route'])}.</p>"
    )


def dashboard_href():
    """The dashboard's address relative to <stats>/usage."""
    return "../" + STATS_ROUTE.rsplit("/", 1)[-1]


def client_link(month, who, text):
    href = html.escape(usage_link(month, who), quote=True)
    return f'<a href="{href}">{text}</a>'


def usage_page(body, limit, now):
    """The clients view: the month's top clients (this page of them), or one client's month:
    its total, hits per day and routes. Same style and policy as the dashboard."""
    month = body["month"]
    year, number_of_month = (int(part) for part in month.split("-"))
    earlier = datetime.date(year, number_of_month, 1) - datetime.timedelta(days=1)
    later = datetime.date(year, number_of_month, 28) + datetime.timedelta(days=4)
    nav = (
        f'<nav><a href="{dashboard_href()}">Dashboard</a>'
        + (
            f'<a href="{html.escape(usage_link(month))}">All clients</a>'
            if "client" in body
            else ""
        )
        + f'<a href="{html.escape(usage_link(earlier.strftime("%Y-%m"), body.get("client")))}">'
        f"{earlier.strftime('%B %Y')}</a>"
        + f'<a href="{html.escape(usage_link(later.strftime("%Y-%m"), body.get("client")))}">'
        f"{later.strftime('%B %Y')}</a></nav>"
    )
    more = ""
    if body["next"]:
        href = usage_link(month, body.get("client"), body["next"], limit)
        more = f'<nav><a href="{html.escape(href)}">Next page</a></nav>'
    title = datetime.date(year, number_of_month, 1).strftime("%B %Y")
    if "client" in body:
        who = body["client"]
        heading = f"Client {who}, {title} (UTC)"
        points = [{"start": d["day"] + "T00:00:00Z", "count": d["hits"]} for d in body["days"]]
        rows = "".join(
            f'<tr><td class="r">{shown(r["route"])}</td>'
            f'<td class="n" data-label="hits">{r["hits"]:,}</td></tr>'
            for r in body["routes"]
        )
        content = (
            f"<section><div class=totals><p><b>{body['hits']:,}</b> "
            f"{plural(body['hits'], 'hit')} this month</p></div><p class=note>Exact: each hit"
            " counted once, in the month, day and route of its own time (UTC).</p></section>"
            + series_chart(points, "Hits per day")
            + "<section><h2>Routes</h2><p class=note>By hits, within this page.</p><table>"
            "<thead><tr><th>Route</th><th class=n>Hits</th></tr></thead>"
            f"<tbody>{rows}</tbody></table></section>"
        )
    else:
        heading = f"Clients, {title} (UTC)"
        clients = body["clients"]
        bars = "".join(
            f"<li><span class=lbl>{client_link(month, c['client'], visible(c['client'], '[%s]'))}"
            f"</span> <b>{c['hits']:,}</b>"
            '<svg class=bar viewBox="0 0 1000 10" preserveAspectRatio="none" aria-hidden="true">'
            f'<rect width="{max(6, int(1000 * c["hits"] / max(clients[0]["hits"], 1)))}"'
            ' height="10"/></svg></li>'
            for c in clients
        )
        content = (
            "<section><h2>Top clients</h2><p class=note>By hits this month"
            + (", within this page" if body["next"] else "")
            + ".</p>"
            + (f"<ol class=bars>{bars}</ol>" if clients else "<p>No client hits this month.</p>")
            + "</section>"
        )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{visible(heading, '[%s]')}</title><style>{CSS}</style></head><body>"
        f"<h1>{visible(heading, '[%s]')}</h1>{nav}{content}{more}</body></html>"
    )


CSS = (
    "body{font:16px/1.45 system-ui,sans-serif;margin:0 auto;padding:1em;max-width:72em;"
    "color:#222}h1{font-size:1.5em;margin:.2em 0;overflow-wrap:anywhere}"
    "h2{font-size:1.15em;margin:1.4em 0 .4em}a{color:#0a58a8}p{margin:.4em 0}"
    "nav a,nav span{display:inline-block;margin:0 1.2em .3em 0}"
    "table{border-collapse:collapse;width:100%}td,th{padding:.3em .5em;text-align:left;"
    "vertical-align:top}th{font-size:.875em}tr:nth-child(even){background:#f4f4f4}"
    ".n{text-align:right;white-space:nowrap}.t{white-space:nowrap}.r{overflow-wrap:anywhere;word-break:break-word}"
    "li{overflow-wrap:anywhere}ol.bars{list-style:none;padding:0;margin:0}"
    "ol.bars li{margin:.35em 0}"
    ".lbl{overflow-wrap:anywhere;word-break:break-word}"
    ".bar{display:block;width:100%;height:10px}.bar rect,.chart rect{fill:#4a7fb0}"
    ".chart svg{display:block;width:100%;height:10em;background:#f6f8fa}"
    ".chart rect.z{fill:#8a8a8a}.axis{display:flex;justify-content:space-between;"
    "gap:.5em;font-size:.8125em;color:#555}.note{color:#555;font-size:.875em}"
    "time[title]{border-bottom:1px dotted #888}.err{border-left:4px solid #b00;padding-left:.8em}"
    ".cf{color:#b00;border:1px solid}"
    # A backend's answers: 5xx and 4xx shares, latency (p90 light, mean dark).
    ".chart rect.e5{fill:#b02a2a}.chart rect.e4{fill:#d98b2b}.chart rect.p9{fill:#b9cde0}"
    ".scroll{overflow-x:auto}"
    # Two panels side by side where each gets 20em, one above the other on a phone.
    ".cols{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(20em,100%),1fr));"
    "gap:0 2.5em}.cols>section{min-width:0}"
    ".totals{display:flex;flex-wrap:wrap;gap:.3em 2.5em;margin:.4em 0}"
    ".totals b{display:block;font-size:1.75em;line-height:1.2}"
    # Narrow screens: each table row becomes a block, its cells labelled by data-label.
    "@media (max-width:40em){body{padding:.6em}h1{font-size:1.25em}thead{display:none}"
    "tr{display:block;padding:.3em 0}td{display:inline-block;padding:0 .8em 0 .3em}"
    "td.r{display:block}td.n{text-align:left}"
    "td[data-label]:before{content:attr(data-label) ' ';color:#555}}"
)
CSP = (
    "default-src 'none'; style-src 'sha256-"
    + base64.b64encode(hashlib.sha256(CSS.encode()).digest()).decode()
    + "'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def top_panel(top, now, heading="Top routes of all time", what="By count", empty=None):
    """Global top routes, as `GET /_stats/top` answers them ({"routes", "asOf"}): the
    TOP_LIMIT highest of the aggregator's item, each linked to its route's page."""
    routes = (top.get("routes") or [])[:TOP_LIMIT]
    if not routes:
        body = f"<p>{empty or 'No route has been counted yet.'}</p>"
        return f"<section><h2>{heading}</h2>{body}</section>"
    return (
        f"<section><h2>{heading}</h2><p class=note>{what}; exact as of its newest hit,"
        f" {when(top.get('asOf'), now)}.</p>"
        f"{ranked_bars(routes, linked=True)}</section>"
    )


def mean_latency(route):
    mean = route["latencyMs"]["mean"]
    return mean, milliseconds(float(mean))


def error_rate(route):
    rates = route["errorRate"]
    return rates["5xx"], f"5xx {rates['5xx']:.1%}, 4xx {rates['4xx']:.1%}"


def monitoring_panels(top, period):
    """The slowest routes and those of the highest error rate among the ranked routes with
    at least DEFAULT_MIN_ANSWERS answers (ordered()); nothing without a backend's answers."""
    shown = []
    for by, heading, measure in (
        ("latency", "Slowest routes", mean_latency),
        ("errors", "Highest error rate", error_rate),
    ):
        routes = ordered(top.get("routes") or [], by, DEFAULT_MIN_ANSWERS)[:TOP_LIMIT]
        if routes:
            shown.append(
                f"<section><h2>{heading} {period}</h2><p class=note>"
                + ("By mean latency" if by == "latency" else "By 5xx share, then 4xx")
                + f" of the answers, among the top routes with at least {DEFAULT_MIN_ANSWERS}"
                f" answers.</p>{ranked_bars(routes, linked=True, measure=measure)}</section>"
            )
    return f"<div class=cols>{''.join(shown)}</div>" if shown else ""


def summary_panels(summary, charts, now):
    """The front page's view of every route, from the aggregator (read_summary, and
    route_charts of ALL_ROUTES): totals, hits over time, the top routes of all time and of
    today. Before its first batch there is nothing to show, and the page says so rather
    than draw zeros that would read as "no hits"."""
    totals, top, today = summary["totals"], summary["top"], summary["today"]
    if top["asOf"] is None and not totals["hits"]:
        return (
            "<section><h2>All routes</h2><p><b>No totals yet.</b> The totals, the hits over"
            " time and the top routes are added up a few seconds after the hits are counted"
            " (30 s at most by default), and none has been added up yet."
            " The routes counted so far are in the table below.</p></section>"
        )
    head = (
        # Analytics is on by default: the totals date from the stack's start, no choice made
        "<section><h2>All routes, since this stack began keeping hits over time</h2>"
        "<div class=totals>"
        f"<p><b>{totals['hits']:,}</b> {plural(totals['hits'], 'hit')}</p>"
        f"<p><b>{totals['routes']:,}</b> {plural(totals['routes'], 'route')}</p>"
        "</div><p class=note>The hits counted since then, and the routes first counted since"
        " then; hits from before are only in the routes' counts below.</p></section>"
    )
    charts_html = "".join(series_chart(points, heading) for heading, points in charts)
    charts_html += "".join(answers_chart(p, answers_heading(h)) for h, p in charts)
    tops = top_panel(top, now) + top_panel(
        today,
        now,
        "Top routes today",
        f"By hits on {today['day']} (UTC)",  # the day whose item was read
        "No hits counted today yet.",
    )
    watch = monitoring_panels(top, "of all time") + monitoring_panels(today, "today")
    return f"{head}<div class=cols>{charts_html}</div><div class=cols>{tops}</div>{watch}"


def all_time_answers(route):
    """A route's answers of all time, from its counter item (record())."""
    classes = route["status"]
    n = sum(classes.values())
    shares = ", ".join(f"{name} {percent(count, n)}" for name, count in classes.items())
    return (
        "<section><h2>Answers of all time</h2><div class=totals>"
        f"<p><b>{n:,}</b> {plural(n, 'answer')}</p>"
        f"<p><b>{percent(classes['5xx'], n)}</b> 5xx</p>"
        f"<p><b>{percent(classes['4xx'], n)}</b> 4xx</p>"
        f"<p><b>{milliseconds(float(route['latencyMs']['mean']))}</b> mean latency</p>"
        f"</div><p class=note>By status class: {shares}.</p></section>"
    )


def page_link(limit, stale, position=None):
    """A link to the page at `position` (see parse_position; None is the first page)."""
    query = [("limit", str(limit))] if limit != DEFAULT_LIMIT else []
    if stale != DEFAULT_STALE_DAYS:
        query.append(("stale", str(stale)))
    if position:
        token, at, back = position
        trail = [f"{a}~{t}" for a, t in back]
        while trail and (len(trail) > MAX_BACK or len(".".join(trail)) > MAX_BACK_CHARS):
            trail.pop(0)  # the oldest pages go first; "first" always works
        query.append(("next", token))
        query += [("at", str(at))] if at is not None else []
        query += [("back", ".".join(trail))] if trail else []
    return html.escape("?" + "&".join(f"{k}={v}" for k, v in query), quote=True)


def paging(routes, limit, stale, next_token, position):
    """The page's label and its first, previous and next links."""
    token, at, back = position or (None, 0, [])
    count = f"{len(routes):,} route{'s' if len(routes) != 1 else ''}"
    if not (token or next_token):
        return (f"All {count}, sorted by count" if routes else "No route has been counted yet"), ""
    if at is None:
        where = f"{count} after {label(decode_token(token)['route']['S'])} in stored order"
        where += " (this link does not say how many came before)"
    else:
        where = f"Routes {at + 1:,}-{at + len(routes):,} in stored order" if routes else "No routes"
    links = []
    if token:
        links.append(f'<a href="{page_link(limit, stale)}">First page</a>')
        if back:
            (prev_at, prev_token), earlier = back[-1], back[:-1]
            before = (prev_token, prev_at, earlier) if prev_token else None
            links.append(f'<a href="{page_link(limit, stale, before)}">Previous page</a>')
        else:
            links.append(
                f"<span class=note>No previous link: a link keeps at most {MAX_BACK} earlier"
                " pages (fewer with long routes); start again from the first page</span>"
            )
    if next_token:
        after = (next_token, None, [])
        if at is not None:
            after = (next_token, at + len(routes), [*back, (at, token or "")])
        links.append(f'<a href="{page_link(limit, stale, after)}">Next page</a>')
    else:
        links.append("<span>Last page</span>")
    return f"{where}, sorted by count within this page", f"<nav>{''.join(links)}</nav>"


def overview(routes, limit, stale, next_token, position, now):
    """What a list of routes says about itself: which page, its totals, its stale routes."""
    where, nav = paging(routes, limit, stale, next_token, position)
    whole = not (next_token or position)
    hits = sum(r["count"] for r in routes)
    totals = (
        f"<p><b>{hits:,} {plural(hits, 'hit')}</b> over "
        f"<b>{len(routes):,} {plural(len(routes), 'route')}</b>: "
        + (
            "every route."
            if whole
            else "this page only (the totals of all routes need every page)."
        )
        + "</p>"
    )
    cutoff = now - stale * 86400
    quiet = sorted(
        (r for r in routes if (stored_seconds(r["lastSeen"]) or now) <= cutoff),
        key=lambda r: r["lastSeen"],
    )
    choices = ", ".join(
        f'<a href="{page_link(limit, days, position)}">{days} day{"s" if days != 1 else ""}</a>'
        for days in STALE_CHOICES
        if days != stale
    )
    stale_rows = "".join(
        f"<li>{shown(r['route'])}: last seen {when(r['lastSeen'], now)}</li>" for r in quiet
    )
    stale_section = (
        f"<section><h2>Not seen for {stale} days or more</h2><p class=note>"
        + ("Of all routes" if whole else "Of the routes on this page only")
        + f", from their last hit. Other thresholds: {choices}.</p>"
        + (f"<ul>{stale_rows}</ul>" if quiet else "<p>None.</p>")
        + "</section>"
    )
    return f"<p>{where}.</p>{nav}{totals}", stale_section, nav


def dashboard(
    routes,
    title,
    next_token=None,
    limit=DEFAULT_LIMIT,
    *,
    position=None,
    single=False,
    stale=DEFAULT_STALE_DAYS,
    now=None,
    series=None,
    summary=None,
    overflow=None,
):
    """One self-contained page: no script, nothing loaded from elsewhere, every route escaped.
    `position` is where a paged view is (see parse_position), `single` says the page is one
    route's; `series` is [(heading, points)], shown when given; `summary` (read_summary's)
    makes it the front page (summary_panels); `overflow` (read_overflow's) says MaxRoutes.

    The front page ranks no page of routes in a chart: the global top does that for every
    route, and a page of a paged view is a slice of scan order, whose "top" means nothing.
    The page's routes stay in the table, sorted by count, with where the page is."""
    now = time.time() if now is None else now
    back, where, stale_section, nav = ("", "", "", "")
    if single:
        back = '<p><a href="?">All routes</a></p>'
    elif CLIENTS_ON:  # link the clients view
        href = html.escape(STATS_ROUTE.rsplit("/", 1)[-1] + "/usage", quote=True)
        back = f'<p><a href="{href}">Clients this month</a></p>'
    if not single:
        where, stale_section, nav = overview(routes, limit, stale, next_token, position, now)
        where += overflow_note(overflow)
    if summary is not None:
        panels = summary_panels(summary, series or [], now)
    else:
        charts = "".join(series_chart(points, heading) for heading, points in series or [])
        panels = f"<div class=cols>{charts}</div>" if charts else ""
        watch = "".join(answers_chart(p, answers_heading(h)) for h, p in series or [])
        panels += f"<div class=cols>{watch}</div>" if watch else ""
    if single and routes and routes[0].get("status"):
        panels = all_time_answers(routes[0]) + panels
    rows = "".join(
        f'<tr><td class="r">'
        f"{shown(r['route']) if single else route_link(r['route'], shown(r['route']))}</td>"
        f'<td class="n" data-label="hits">{r["count"]:,}</td><td class=t data-label="first seen">'
        f'{when(r["firstSeen"], now)}</td><td class=t data-label="last seen">'
        f"{when(r['lastSeen'], now)}</td></tr>"
        for r in routes
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{visible(readable(title), '[%s]')}</title><style>{CSS}</style></head><body>"
        f"<h1>{shown(title)}</h1>{back}{panels}{stale_section}<section><h2>Routes</h2>{where}"
        "<table><thead><tr><th>Route</th><th class=n>Hits</th>"
        "<th>First seen</th><th>Last seen</th></tr></thead>"
        f"<tbody>{rows}</tbody></table><p class=note>Times are relative to when this page was"
        f" made; hover one for its UTC time.</p></section>{nav}</body></html>"
    )


def error_page(status, message, below_stats=False):
    """An error as a browser user reads it: same style and policy as the dashboard. Its link
    leads to the dashboard, also from a page below it (<stats>/usage): never back to itself."""
    back = dashboard_href() if below_stats else "?"
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>Error {status}</title><style>{CSS}</style></head><body>"
        f"<h1>Error {status}: {HTTPStatus(status).phrase}</h1>"
        f"<p class=err>{visible(message, '[%s]')}</p>"
        f'<p><a href="{back}">Back to the dashboard</a></p></body></html>'
    )
