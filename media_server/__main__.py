"""`python -m media_server`."""

import sys

from media_server.cli import main

sys.exit(main())
