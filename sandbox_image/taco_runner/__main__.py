"""``python3 -m taco_runner``: the runner, PID 1 of its sandbox."""

from .serve import main

if __name__ == "__main__":
    main()
