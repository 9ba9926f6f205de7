"""Benchmark analysis: load pytest-benchmark results, render tables and plots, gate regressions.

`python -m analysis.report --help` lists what the command does; the modules are
`schema` (every result field and suite, declared once; no pandas), `load`
(files -> one tidy DataFrame), `frames` (pure table helpers), `compare` (the
long deltas frame of two runs), `rules` (the gate's limits and rule objects),
`baseline` (the gate's baseline file), `gate` (the regression check), `render`
(rich, markdown, CSV, JSON) and `plots` (PNGs via matplotlib's Agg canvas).
"""
