"""semrank.store."""
