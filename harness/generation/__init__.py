"""Stage 3, generating samples: the plan and per-sample seeds, sampling, the engine protocol, the
fast and hf engines, worker processes and the generation journal."""
