"""semrank.server."""
