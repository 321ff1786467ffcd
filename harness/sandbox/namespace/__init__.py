"""Sandboxes as fresh Linux namespaces on this machine, for hosts without Docker."""
