"""`python -m membed.plan`: see `membed.plan.cli`."""

import sys

from membed.plan.cli import main

if __name__ == "__main__":
    sys.exit(main())
