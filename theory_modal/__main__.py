import sys

from theory_modal.cli import main

sys.exit(main())
