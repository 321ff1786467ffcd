"""Stage 1, what the harness reads and writes: problems and their tests, generation files, the
official prompt and EOF truncation, the append-only journal and the atomic file writer."""
