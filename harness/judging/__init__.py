"""Stage 2, TACO semantics (pure): the programs TACO runs, its output comparisons, and verdicts
assembled from what a sandbox reports."""
