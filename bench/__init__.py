"""pytest-benchmark suites of membed.

The grid lives in bench/grid.py, the pytest hooks in bench/conftest.py and the
harness the suites share in bench/harness.py.
"""
