"""The grading engine: what runs at grading time (locally, in containers and on Gradescope).

It imports only itself, the standard library and numpy; see docs/architecture.md."""
