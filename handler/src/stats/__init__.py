"""Route Counter stats, as JSON or an HTML page; never counts. README.md: "GET /_stats"."""
