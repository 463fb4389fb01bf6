"""`python -m reid`: the `reid` command."""

import sys

from reid.commands import main

sys.exit(main())
