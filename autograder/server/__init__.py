"""The course server: ``autograder serve`` (see ``app`` and docs/running-a-class.md)."""
