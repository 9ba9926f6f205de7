"""pytest-benchmark suites of membed; the grid lives in bench/grid.py, the shared machinery in bench/conftest.py."""
