"""The authoring side: releases, solution markers, mutation coverage, grading bundles, the demo.

It may import the engine; the engine never imports it (see docs/architecture.md)."""
