"""Member pipeline, merge batch and review queue."""
