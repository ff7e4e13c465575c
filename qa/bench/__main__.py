"""``python -m qa.bench``: the same as ``python -m qa bench``."""

import sys

from qa.bench.speed import main

sys.exit(main())
