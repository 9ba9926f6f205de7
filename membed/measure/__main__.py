"""`python -m membed.measure [SPEC_JSON]`: one memory case measured in this process (see `membed.measure.main`)."""

import sys

from membed.measure import main

sys.exit(main())
