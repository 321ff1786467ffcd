"""Stage 2, where programs run: the sandbox seam and its wire protocol, a generic pool that runs
jobs on sandboxes with retries (it knows nothing of TACO), and the Docker and namespace backends."""
