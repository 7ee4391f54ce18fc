"""needle-course autograder."""
