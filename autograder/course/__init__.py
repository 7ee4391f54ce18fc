"""Running a class (instructor side): roster and identities, deadlines and late policy,
regrades, LMS exports, similarity, the class report. May import the engine and the authoring
side; the engine never imports this package. See docs/running-a-class.md."""
