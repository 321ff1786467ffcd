"""Sandboxes as locked-down Docker containers, and the content-hashed sandbox image."""
