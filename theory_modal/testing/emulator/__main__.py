"""``python -m theory_modal.testing.emulator``: see :mod:`theory_modal.testing.emulator.cli`."""

import sys

from .cli import main

sys.exit(main())
