"""``python -m litemeta.cli``, as ``torchrun -m litemeta.cli`` runs it."""

import sys

from litemeta.cli.entry import main

sys.exit(main())
