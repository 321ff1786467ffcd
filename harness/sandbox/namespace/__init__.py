"""Sandboxes as fresh Linux namespaces on this machine, for hosts without Docker: the backend and its
sandboxes (``backend``), the root file system and environment they run in (``root``), and their
cgroup v2 limits (``cgroups``)."""
