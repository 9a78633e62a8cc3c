"""`python -m policy_server ...` (same as the `policy_server` console script)."""

import sys

from .cli import main

sys.exit(main())
