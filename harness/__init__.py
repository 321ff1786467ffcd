"""taco-harness: fast, faithful, sandboxed evaluation of code LLMs on TACO."""

__version__ = "0.1.0"
