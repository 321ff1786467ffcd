"""Stage 3, evaluating samples: one TACO job on a sandbox, the job plan and keys, the session
that answers samples from the journal, the cache or the pool, and the TACO output files."""
