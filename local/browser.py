"""The dashboard in a real browser: Debian's headless Chromium, a page served on 127.0.0.1.

`python -m local.browser OUT_DIR` (`make screenshots`) writes screenshots of a sample
dashboard at 1280 and 375 px wide; tests/integration/test_dashboard_browser.py measures the
page as a user at 375 px would see it.
"""

import base64
import hashlib
import http.server
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",  # runs as root on this machine
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]
# What a user at this width would notice, written into the page for --dump-dom to print:
# the widest thing against the viewport, and the smallest text as drawn (an SVG text's font
# size times the scale its viewBox gives it).
MEASURE = (
    "(function(){var small=[],least=1e9;"
    "document.querySelectorAll('body *').forEach(function(e){"
    "var own=[].some.call(e.childNodes,function(n){return n.nodeType==3&&n.data.trim()});"
    "var box=e.getBoundingClientRect();if(!own||!box.width||!box.height)return;"
    "var size=parseFloat(getComputedStyle(e).fontSize),m=e.getScreenCTM&&e.getScreenCTM();"
    "if(m)size*=Math.min(Math.abs(m.a),Math.abs(m.d));"
    "if(size<least)least=size;if(size<11)small.push(e.tagName+': '+e.textContent.slice(0,40))});"
    "document.body.setAttribute('data-measured',JSON.stringify({viewport:innerWidth,"
    "scrollWidth:document.documentElement.scrollWidth,smallestFont:least,small:small,"
    "violations:window.violations||[]}))})();"
)
# Registered before the page's style, so a style the policy refuses is reported.
WATCH = (
    "window.violations=[];document.addEventListener('securitypolicyviolation',"
    "function(e){window.violations.push(e.violatedDirective+' '+e.blockedURI)});"
)


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def load_stats():
    """handler/stats.py as Lambda imports it (its boto3 client needs a region, never used)."""
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    spec = importlib.util.spec_from_file_location("stats_in_browser", ROOT / "handler/stats.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def script_hash(script: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"


def measured(page: str, headers: dict[str, str]) -> tuple[str, dict[str, str]]:
    """The page and headers with the measuring scripts added, and only them allowed to run."""
    page = page.replace("<head>", f"<head><script>{WATCH}</script>", 1)
    page = page.replace("</body>", f"<script>{MEASURE}</script></body>", 1)
    policy = headers["Content-Security-Policy"]
    allowed = f"{policy}; script-src {script_hash(WATCH)} {script_hash(MEASURE)}"
    return page, {**headers, "Content-Security-Policy": allowed}


@contextmanager
def serve(pages: dict[str, tuple[int, dict[str, str], str]]) -> Iterator[str]:
    """Serve {path: (status, headers, body)} on 127.0.0.1, a free port, until the block ends."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            status, headers, body = pages.get(self.path, (404, {}, "not here"))
            data = body.encode()
            self.send_response(status)
            for name, value in {**headers, "Content-Length": str(len(data))}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def run_chromium(url: str, width: int, height: int, *args: str) -> str:
    """One headless Chromium run with a new empty profile; its stdout."""
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        done = subprocess.run(
            [
                chromium(),
                *CHROMIUM_FLAGS,
                f"--user-data-dir={profile}",
                f"--window-size={width},{height}",
                *args,
                url,
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
    return done.stdout


def measure(url: str, width: int) -> dict:
    dom = run_chromium(url, width, 900, "--dump-dom")
    found = re.search(r"data-measured=\"([^\"]*)\"", dom)
    if not found:
        raise AssertionError(f"the page reported no measurement: {dom[:500]}")
    text = found.group(1).replace("&quot;", '"').replace("&amp;", "&")
    text = text.replace("&lt;", "<").replace("&gt;", ">")
    return json.loads(text)


def screenshot(url: str, width: int, height: int, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    run_chromium(url, width, height, f"--screenshot={path}")


# --- The sample dashboard the screenshots show ------------------------------------------

NOW = 1_796_094_000  # 2026-12-01T03:00:00Z


def stamp(seconds_ago: int) -> str:
    import time

    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(NOW - seconds_ago))


def sample_routes() -> list[dict]:
    shapes = [
        ("/api/v1/orders", 48211, 180),
        ("/api/v1/customers/search", 20377, 40),
        ("/", 9120, 5),
        ("/health", 7311, 30),
        ("/api/v1/reports/" + "quarterly-revenue-by-region-" * 4 + "2026", 1204, 86400 * 3),
        ("/\u202egnp.exe", 31, 86400 * 12),
        ("/legacy/checkout", 12, 86400 * 45),
        ("/%3Cscript%3Ealert(1)%3C/script%3E", 3, 86400 * 9),
    ]
    return [
        {"route": r, "count": c, "firstSeen": stamp(86400 * 90), "lastSeen": stamp(s)}
        for r, c, s in shapes
    ]


def sample_points(buckets: int, size: int) -> list[dict]:
    import time

    first = (NOW // size - buckets + 1) * size  # buckets start on the hour or at midnight
    shape = [0, 0, 3, 12, 40, 55, 61, 48, 0, 22, 75, 90, 84, 66, 31, 9]
    return [
        {
            "start": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(first + i * size)),
            "count": shape[i % len(shape)] * (7 if size == 86400 else 1),
        }
        for i in range(buckets)
    ]


def sample_page(stats) -> str:
    """Page 2 of a paged view, with the series and top panels wired as the backend will."""
    routes = sample_routes()
    token = base64.urlsafe_b64encode(b"/api/v0/old").decode().rstrip("=")
    following = base64.urlsafe_b64encode(b"/zz").decode().rstrip("=")
    top = {
        "routes": [{"route": r["route"], "count": r["count"] * 3} for r in routes[:5]],
        "asOf": stamp(95),
    }
    series = [
        ("Hits per hour, last 24 hours, all routes", sample_points(24, 3600)),
        ("Hits per day, last 30 days, all routes", sample_points(30, 86400)),
    ]
    return stats.dashboard(
        routes,
        "Route Counter",
        following,
        100,
        position=(token, 100, [(0, "")]),
        now=NOW,
        series=series,
        top=top,
    )


def main(out: Path) -> None:
    if not chromium():
        sys.exit("chromium is not installed: apt-get install -y chromium (Debian's package)")
    stats = load_stats()
    headers = {"Content-Type": "text/html; charset=utf-8", "Content-Security-Policy": stats.CSP}
    pages = {
        "/_stats": (200, headers, sample_page(stats)),
        "/_stats/error": (400, headers, stats.error_page(400, "'stale' must be a whole number")),
    }
    with serve(pages) as url:
        for width, height in ((1280, 2600), (375, 4200)):
            screenshot(f"{url}/_stats", width, height, out / f"dashboard-{width}.png")
        screenshot(f"{url}/_stats/error", 375, 500, out / "error-375.png")
    for path in sorted(out.glob("*.png")):
        print(path)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "screenshots"))
