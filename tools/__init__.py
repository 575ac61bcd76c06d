"""Development tools, never part of the local stack's runtime: the dashboard in headless
Chromium (browser.py, `make screenshots`) and the fault-injecting proxy the tests put between
a handler and the emulator (faultproxy.py)."""
