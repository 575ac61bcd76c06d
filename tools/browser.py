"""The dashboard in a real browser: Debian's headless Chromium, a page served on 127.0.0.1.

`python -m tools.browser OUT_DIR` (`make screenshots`) writes screenshots of a sample
dashboard at 1280 and 375 px wide; with `--url URL`, of the page a running stack serves; with
`--local-stack`, of a local stack it starts, sends real hits to and stops (the README's
screenshot). tests/integration/test_dashboard_browser.py measures the page as a user at
375 px would see it.
"""

import argparse
import base64
import http.server
import importlib.util
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
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
# What a user at this width would notice: the widest thing against the viewport, the smallest
# text as drawn (an SVG text's font size times the scale its viewBox gives it), and whether
# the page's one style block was applied (a style the policy refuses makes no stylesheet).
MEASURE = """(() => {
  let least = 1e9; const small = [];
  for (const e of document.querySelectorAll("body *")) {
    const own = [...e.childNodes].some(n => n.nodeType === 3 && n.data.trim());
    const box = e.getBoundingClientRect();
    if (!own || !box.width || !box.height) continue;
    let size = parseFloat(getComputedStyle(e).fontSize);
    const m = e.getScreenCTM && e.getScreenCTM();
    if (m) size *= Math.min(Math.abs(m.a), Math.abs(m.d));
    least = Math.min(least, size);
    if (size < 11) small.push(e.tagName + ": " + e.textContent.slice(0, 40));
  }
  return {viewport: innerWidth, scrollWidth: document.documentElement.scrollWidth,
          smallestFont: least, small,
          styled: [...document.styleSheets].filter(s => s.cssRules.length).length};
})()"""


# DevTools events: a request paused by the Fetch domain, the browser asking for credentials,
# the page loaded.
PAUSES = ("Fetch.requestPaused", "Fetch.authRequired")
LOADED = "Page.loadEventFired"


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def load_stats():
    """handler/stats.py as Lambda imports it (its boto3 client needs a region, never used)."""
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    spec = importlib.util.spec_from_file_location("stats_in_browser", ROOT / "handler/stats.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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


class Tab:
    """One page of a headless Chromium driven over the DevTools protocol on a pipe
    (--remote-debugging-pipe: Chromium reads fd 3, writes fd 4). A pipe, not a port: nothing
    listens, and the window can be phone-sized (a headless window is at least 500 px wide,
    so --window-size cannot show 375 px; device metrics emulation can)."""

    def __init__(self, profile: str, timeout: float = 60):
        self.timeout, self.ids, self.buffer = timeout, iter(range(1, 10**9)), b""
        to_chromium, self.writer = os.pipe()
        self.reader, from_chromium = os.pipe()
        argv = [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}"]
        argv += ["--remote-debugging-pipe", "about:blank"]
        actions = [
            (os.POSIX_SPAWN_DUP2, to_chromium, 3),
            (os.POSIX_SPAWN_DUP2, from_chromium, 4),
            (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
            (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0),
        ]
        self.pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=actions)
        os.close(to_chromium)
        os.close(from_chromium)
        page = next(t for t in self.call("Target.getTargets")["targetInfos"] if t["type"] == "page")
        attached = self.call("Target.attachToTarget", targetId=page["targetId"], flatten=True)
        self.session = attached["sessionId"]
        self.call("Page.enable", session=True)

    def call(self, method: str, session: bool = False, **params) -> dict:
        ask_id = next(self.ids)
        message = {"id": ask_id, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        os.write(self.writer, json.dumps(message).encode() + b"\0")
        answer = self.wait(lambda m: m.get("id") == ask_id)
        if "error" in answer:
            raise RuntimeError(f"{method}: {answer['error']}")
        return answer["result"]

    def wait(self, wanted) -> dict:
        deadline = time.monotonic() + self.timeout
        while True:
            while b"\0" in self.buffer:
                raw, self.buffer = self.buffer.split(b"\0", 1)
                message = json.loads(raw)
                if wanted(message):
                    return message
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.reader], [], [], left)[0]:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self.reader, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium exited")
            self.buffer += chunk

    def open(self, url: str, width: int, height: int = 900) -> None:
        """Load url in a phone-like (mobile, meta viewport honoured) or desktop viewport."""
        self.resize(width, height)
        self.call("Page.navigate", session=True, url=url)
        self.wait(lambda m: m.get("method") == "Page.loadEventFired")

    def open_answering(
        self, url: str, width: int, credentials: tuple[str, str] | None
    ) -> list[dict]:
        """Load url as a user who, when the browser asks for a user name and password (a 401
        with a WWW-Authenticate challenge), types these, or cancels (None). The challenges
        it asked for."""
        self.resize(width, 900)
        self.call("Fetch.enable", session=True, handleAuthRequests=True)
        asked: list[dict] = []
        self._send("Page.navigate", url=url)
        while True:
            event = self.wait(lambda m: m.get("method") in PAUSES or m.get("method") == LOADED)
            params = event.get("params", {})
            if event["method"] == LOADED:
                break
            if event["method"] == "Fetch.authRequired":
                asked.append(params["authChallenge"])
                answer = {"response": "CancelAuth"}
                if credentials is not None:
                    user, password = credentials
                    answer = {"response": "ProvideCredentials", "username": user}
                    answer["password"] = password
                self._send(
                    "Fetch.continueWithAuth",
                    requestId=params["requestId"],
                    authChallengeResponse=answer,
                )
            else:
                self._send("Fetch.continueRequest", requestId=params["requestId"])
        self.call("Fetch.disable", session=True)
        return asked

    def _send(self, method: str, **params) -> None:
        """A command to the page whose answer is not waited for (events come meanwhile)."""
        message = {"id": next(self.ids), "method": method, "params": params}
        os.write(self.writer, json.dumps({**message, "sessionId": self.session}).encode() + b"\0")

    def resize(self, width: int, height: int) -> None:
        metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 800}
        self.call("Emulation.setDeviceMetricsOverride", session=True, **metrics)

    def evaluate(self, expression: str):
        found = self.call(
            "Runtime.evaluate", session=True, expression=expression, returnByValue=True
        )
        return found["result"]["value"]

    def screenshot(self, path: Path) -> None:
        """The whole page, as tall as its content."""
        width = self.evaluate("innerWidth")
        self.resize(width, self.evaluate("document.documentElement.scrollHeight"))
        shot = self.call("Page.captureScreenshot", session=True, format="png")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))

    def close(self) -> None:
        try:
            self.call("Browser.close")
        except (RuntimeError, TimeoutError, OSError):
            os.kill(self.pid, signal.SIGKILL)
        finally:
            os.waitpid(self.pid, 0)
            os.close(self.writer)
            os.close(self.reader)


@contextmanager
def tab() -> Iterator[Tab]:
    """A headless Chromium with a new empty profile, always stopped."""
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        opened = Tab(profile)
        try:
            yield opened
        finally:
            opened.close()


def measure(url: str, width: int) -> dict:
    with tab() as page:
        page.open(url, width)
        return page.evaluate(MEASURE)


# --- The sample dashboard the screenshots show ------------------------------------------

NOW = 1_796_094_000  # 2026-12-01T03:00:00Z


def stamp(seconds_ago: int) -> str:
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
    """The front page as the handler serves it, page 2 of a paged view, built by the
    handler's own functions from sample data in the shapes its reads answer (read_page,
    read_summary, route_charts of every route)."""
    routes = sample_routes()
    token = base64.urlsafe_b64encode(b"/api/v0/old").decode().rstrip("=")
    following = base64.urlsafe_b64encode(b"/zz").decode().rstrip("=")
    summary = {
        "top": {
            "routes": [{"route": r["route"], "count": r["count"] * 3} for r in routes[:6]],
            "asOf": stamp(95),
        },
        "today": {
            "routes": [{"route": r["route"], "count": r["count"] // 40} for r in routes[:4]],
            "asOf": stamp(95),
            "day": time.strftime("%Y-%m-%d", time.gmtime(NOW)),
        },
        "totals": {"hits": 257_611, "routes": 212},
    }
    series = [
        (stats.chart_heading("hour", stats.ALL_ROUTES), sample_points(24, 3600)),
        (stats.chart_heading("day", stats.ALL_ROUTES), sample_points(30, 86400)),
    ]
    return stats.dashboard(
        routes,
        "Route Counter",
        following,
        100,
        position=(token, 100, [(0, "")]),
        now=NOW,
        series=series,
        summary=summary,
    )


def screenshots(url: str, out: Path, names: list[tuple[str, str, int]]) -> None:
    """Screenshots of url + path at each width, as out/<name>.png."""
    with tab() as page:
        for name, path, width in names:
            page.open(url + path, width)
            page.screenshot(out / f"{name}.png")
            print(out / f"{name}.png")


# --- The README's screenshot: a local stack after real hits ---------------------------------

# Routes and their share of the hits sent (a few busy, a long tail).
SHOWCASE = {
    "/api/v1/orders": 60,
    "/api/v1/customers/search": 45,
    "/": 30,
    "/health": 25,
    "/api/v1/orders/export": 15,
    "/login": 12,
    "/api/v1/reports/quarterly-revenue-by-region-2026": 8,
    "/legacy/checkout": 5,
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def caught_up(base: str, sent: int) -> bool:
    """True once the aggregator's all-time top counts every hit sent (each route is in it)."""
    with urllib.request.urlopen(f"{base}/_stats/top?limit=100", timeout=5) as answer:  # noqa: S310
        top = json.load(answer)
    return top["asOf"] is not None and sum(r["count"] for r in top["routes"]) == sent


def local_stack_screenshots(out: Path, timeout: float = 120) -> None:
    """Start `./deploy.sh --local` on a free port with empty tables in a temporary directory,
    send SHOWCASE's hits over HTTP, wait (bounded) until the aggregator has counted them,
    screenshot the front page at 1280 and 375 px, and stop the stack with SIGINT (Ctrl-C)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="route-counter-shot-") as state:
        log = Path(state) / "local.log"
        argv = ["./deploy.sh", "--local", "--port", str(port), "--fresh", "--state-dir", state]
        with log.open("wb") as sink:
            stack = subprocess.Popen(
                argv, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
            )
        try:
            deadline = time.monotonic() + timeout
            while "Ctrl-C to stop" not in log.read_text():
                if stack.poll() is not None or time.monotonic() > deadline:
                    sys.exit(f"the local stack did not start:\n{log.read_text()}")
                time.sleep(0.2)
            for route, hits in SHOWCASE.items():
                for _ in range(hits):
                    urllib.request.urlopen(base + route, timeout=5).close()  # noqa: S310
            sent = sum(SHOWCASE.values())
            while not caught_up(base, sent):
                if time.monotonic() > deadline:
                    sys.exit(f"the aggregator did not count {sent} hits in {timeout:.0f} s")
                time.sleep(0.5)
            screenshots(
                base,
                out,
                [("dashboard-1280", "/_stats", 1280), ("dashboard-375", "/_stats", 375)],
            )
        finally:
            if stack.poll() is None:
                stack.send_signal(signal.SIGINT)  # as Ctrl-C: it stops its emulator too
                try:
                    stack.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(stack.pid, signal.SIGKILL)
                    stack.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tools.browser",
        description="Screenshots of the dashboard in headless Chromium at 1280 and 375 px.",
    )
    parser.add_argument("out", nargs="?", default="screenshots", type=Path, help="directory")
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--url", help="the page a running stack serves (e.g. http://127.0.0.1:3000/_stats)"
    )
    source.add_argument(
        "--local-stack",
        action="store_true",
        help="start ./deploy.sh --local, send real hits, screenshot its front page, stop it",
    )
    args = parser.parse_args(argv)
    if not chromium():
        sys.exit("chromium is not installed: apt-get install -y chromium (Debian's package)")
    if args.local_stack:
        local_stack_screenshots(args.out)
        return
    if args.url:
        widths = [("dashboard-1280", "", 1280), ("dashboard-375", "", 375)]
        screenshots(args.url, args.out, widths)
        return
    stats = load_stats()
    headers = {"Content-Type": "text/html; charset=utf-8", "Content-Security-Policy": stats.CSP}
    pages = {
        "/_stats": (200, headers, sample_page(stats)),
        "/_stats/error": (400, headers, stats.error_page(400, "'stale' must be a whole number")),
    }
    with serve(pages) as url:
        screenshots(
            url,
            args.out,
            [
                ("dashboard-1280", "/_stats", 1280),
                ("dashboard-375", "/_stats", 375),
                ("error-375", "/_stats/error", 375),
            ],
        )


if __name__ == "__main__":
    main()
