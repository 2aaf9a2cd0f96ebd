"""``python -m pipelines.cli``: the same as ``concept-lens``."""

import sys

from . import main

sys.exit(main())
