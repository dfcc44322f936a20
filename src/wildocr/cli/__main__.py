"""`python -m wildocr.cli` = the `wildocr` command."""

import sys

from wildocr.cli import main

sys.exit(main())
