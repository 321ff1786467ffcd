"""Evaluation (and generation) spread over the machines of a Ray cluster, behind the seams the stages
already have.

* ``choice``: ``ClusterChoice`` (``--cluster ray``, ``--ray-address``), which opens the execution
  service; importing it imports no Ray.
* ``host``: the work of one sandbox host, run as a Ray actor on each node that offers the custom
  resource ``taco_sandbox_host``: it owns that node's local ``SandboxPool`` and says what its
  sandboxes are (``SandboxIdentity``).
* ``service``: ``RayExecutionService``, the driver's side: an ``ExecutionService`` (as the local pool
  is) that keeps the priority queue, hands each host as many jobs as it has room for, and re-queues
  the jobs of a host that dies.
* ``generation``: the generation side (one actor per GPU).

Ray is imported only when a cluster is actually opened: without ``--cluster`` nothing here loads it.
"""
