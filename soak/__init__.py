"""The chaos soak: `python -m soak` (or `make soak`) serves the app for real, drives load across
200 applications while faults are injected on a seeded schedule, then checks its promises."""
