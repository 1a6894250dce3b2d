"""``python -m pixeldrl``: the ``pixeldrl`` command."""

import sys

from pixeldrl.cli import main

sys.exit(main())
