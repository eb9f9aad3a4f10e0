"""``python -m neonet`` runs the CLI."""

import sys

from neonet.cli.main import main

sys.exit(main())
