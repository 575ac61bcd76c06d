"""Development tools, never part of the local stack's runtime: the dashboard in headless
Chromium (browser.py, `make screenshots`), the fault-injecting proxy the tests put between
a handler and the emulator (faultproxy.py), and the bundler that writes handler/stats.py from
handler/src/stats/ (bundle.py, `make bundle`)."""
