"""`python -m renderq.cli`: the `renderq` command without its console script."""

import sys

from renderq.cli import main

sys.exit(main())
