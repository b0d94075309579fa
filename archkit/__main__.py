"""``python -m archkit``."""

import sys

from .cli import main

sys.exit(main())
