"""Benchmark analysis: load pytest-benchmark results, render tables and plots, gate regressions.

`python -m analysis.report --help` lists what the command does; the modules are
`load` (files -> one tidy DataFrame), `frames` (pure table helpers), `gate` (the
regression rules and the baseline file), `render` (rich, markdown, CSV, JSON) and
`plots` (PNGs via matplotlib's Agg canvas).
"""
