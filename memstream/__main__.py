"""``python -m memstream``: the command line, as the ``memstream`` script runs it."""

import sys

from memstream.cli import main

sys.exit(main())
