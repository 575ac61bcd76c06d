"""The dashboard's charts: inline SVG bars (no script), every value in a table as well."""

import html
import time

from .items import LATENCY_BOUNDS
from .text import label, milliseconds, percent, route_link, stored_seconds


def answers_heading(heading):
    """The answers chart's heading beside its hits chart's ("Hits per hour, ...")."""
    return "Answers" + heading.removeprefix("Hits")


def hit_count(route):
    return route["count"], f"{route['count']:,}"


def ranked_bars(routes, linked=False, measure=hit_count):
    """Routes as horizontal bars, labels in HTML so they wrap and keep their size; linked,
    each label opens the route's page. `measure` gives a route's (value, text)."""
    measured = [(r, *measure(r)) for r in routes]
    peak = max([value for _, value, _ in measured] + [1])
    return (
        "<ol class=bars>"
        + "".join(
            "<li><span class=lbl>"
            f"{route_link(r['route'], label(r['route'])) if linked else label(r['route'])}"
            f"</span> <b>{text}</b>"
            '<svg class=bar viewBox="0 0 1000 10" preserveAspectRatio="none" aria-hidden="true">'
            f'<rect width="{max(6, int(1000 * value / peak))}" height="10"/></svg></li>'
            for r, value, text in measured
        )
        + "</ol>"
    )


def answer_rows(points, hourly):
    """The "Every bucket" rows of the answers charts."""
    rows = []
    for p in points:
        classes, latency = p.get("status"), p.get("latencyMs")
        cells = ["0", "-", "-", "-", "-"]
        if classes:
            n = sum(classes.values())
            cells = [f"{n:,}", percent(classes["5xx"], n), percent(classes["4xx"], n)]
            cells += [milliseconds(latency["mean"]), milliseconds(latency["p90"])]
        rows.append(
            f"<tr><td>{point_label(p['start'], hourly)}</td>"
            + "".join(
                f'<td class=n data-label="{name}">{cell}</td>'
                for name, cell in zip(("answers", "5xx", "4xx", "mean", "p90"), cells, strict=True)
            )
            + "</tr>"
        )
    return "".join(rows)


def answers_chart(points, heading):
    """A backend's answers per bucket, from the series points' "status" and "latencyMs":
    the 5xx and 4xx shares (stacked bars, of 100%) and the mean and p90 latency (p90 light
    behind the mean; p90 past the last bound drawn at it). Empty when no point has any."""
    answered = [p for p in points if p.get("status")]
    if not answered:
        return ""
    n, hourly = len(points), any((stored_seconds(p["start"]) or 0) % 86400 for p in points)
    slowest = max(
        [p["latencyMs"]["p90"] or LATENCY_BOUNDS[-1] for p in answered]
        + [p["latencyMs"]["mean"] for p in answered]
        + [1]
    )
    errors, latency = [], []
    for i, p in enumerate(points):
        if not p.get("status"):
            continue
        classes, ms = p["status"], p["latencyMs"]
        total, at = sum(classes.values()), point_label(p["start"], hourly)
        e5, e4 = 100 * classes["5xx"] / total, 100 * classes["4xx"] / total
        tip = (
            f"<title>{at} UTC: {total:,} answers, 5xx {percent(classes['5xx'], total)},"
            f" 4xx {percent(classes['4xx'], total)}, mean {milliseconds(ms['mean'])},"
            f" p90 {milliseconds(ms['p90'])}</title>"
        )
        errors.append(
            f'<rect class=e5 x="{i * 10 + 1}" y="{100 - e5:.1f}" width="8" height="{e5:.1f}">'
            f'{tip}</rect><rect class=e4 x="{i * 10 + 1}" y="{100 - e5 - e4:.1f}" width="8"'
            f' height="{e4:.1f}">{tip}</rect>'
        )
        p90 = 100 * (ms["p90"] or LATENCY_BOUNDS[-1]) / slowest
        mean = max(1, 100 * ms["mean"] / slowest)
        latency.append(
            f'<rect class=p9 x="{i * 10 + 1}" y="{100 - p90:.1f}" width="8" height="{p90:.1f}">'
            f'{tip}</rect><rect x="{i * 10 + 1}" y="{100 - mean:.1f}" width="8"'
            f' height="{mean:.1f}">{tip}</rect>'
        )
    ticks = [points[0], points[n // 2], points[-1]] if n > 2 else points
    axis = (
        "<div class=axis>"
        + "".join(f"<span>{point_label(p['start'], hourly)}</span>" for p in ticks)
        + "</div>"
    )

    def svg(label_text, bars):
        return (
            f'<svg role="img" aria-label="{html.escape(label_text)}" viewBox="0 0 {n * 10} 100"'
            f' preserveAspectRatio="none">{"".join(bars)}</svg>{axis}'
        )

    worst = max(answered, key=lambda p: p["status"]["5xx"] / sum(p["status"].values()))
    worst_share = percent(worst["status"]["5xx"], sum(worst["status"].values()))
    return (
        f"<section class=chart><h2>{html.escape(heading)}</h2>"
        f"<p class=note>Error rate: 5xx (red) and 4xx (orange) of the answers; the worst"
        f" {period(hourly)}'s 5xx share is {worst_share}.</p>"
        + svg(f"{heading}: error rate", errors)
        + f"<p class=note>Latency: mean (dark) and p90 (light, rounded up: latencies are"
        f" counted in ranges); the tallest is {milliseconds(float(slowest))}.</p>"
        + svg(f"{heading}: latency", latency)
        + f"<details><summary>Every {period(hourly)}</summary><div class=scroll><table><thead>"
        "<tr><th>Start (UTC)</th><th class=n>Answers</th><th class=n>5xx</th><th class=n>4xx"
        "</th><th class=n>Mean</th><th class=n>p90</th></tr></thead><tbody>"
        f"{answer_rows(points, hourly)}</tbody></table></div></details></section>"
    )


def period(hourly):
    return "hour" if hourly else "day"


def point_label(start, hourly):
    stamp = stored_seconds(start)
    if stamp is None:
        return html.escape(str(start))
    return time.strftime("%b %d %H:%M" if hourly else "%b %d", time.gmtime(stamp))


def series_chart(points, heading):
    """Hits per bucket as inline SVG bars, from points [{"start", "count"}] as the series
    endpoint answers them. Every bucket gets a bar (a grey stub for zero hits); the axis
    labels are HTML, so they keep their size however narrow the chart gets."""
    if not points:
        return f"<section><h2>{html.escape(heading)}</h2><p>No data points.</p></section>"
    n, peak = len(points), max([p["count"] for p in points] + [1])
    hourly = any((stored_seconds(p["start"]) or 0) % 86400 for p in points)
    bars = "".join(
        f'<rect x="{i * 10 + 1}" y="{100 - max(1, 100 * p["count"] / peak):.1f}" width="8"'
        f' height="{max(1, 100 * p["count"] / peak):.1f}"{" class=z" if not p["count"] else ""}>'
        f"<title>{point_label(p['start'], hourly)} UTC: {p['count']:,} hits</title></rect>"
        for i, p in enumerate(points)
    )
    ticks = [points[0], points[n // 2], points[-1]] if n > 2 else points
    rows = "".join(
        f"<tr><td>{point_label(p['start'], hourly)}</td><td class=n>{p['count']:,}</td></tr>"
        for p in points
    )
    total = sum(p["count"] for p in points)
    return (
        f"<section class=chart><h2>{html.escape(heading)}</h2>"
        f"<p class=note>{total:,} hits in {n} {period(hourly)}s; the highest bar is {peak:,};"
        f" grey stubs are {period(hourly)}s with no hits. Times in UTC.</p>"
        f'<svg role="img" aria-label="{html.escape(heading)}" viewBox="0 0 {n * 10} 100"'
        f' preserveAspectRatio="none">{bars}</svg><div class=axis>'
        + "".join(f"<span>{point_label(p['start'], hourly)}</span>" for p in ticks)
        + f"</div><details><summary>Every {period(hourly)}</summary><table><thead><tr>"
        f"<th>Start (UTC)</th><th class=n>Hits</th></tr></thead><tbody>{rows}</tbody></table>"
        "</details></section>"
    )
