"""``python -m dpsad_core``: the CLI, as torchrun and the elastic launcher start each worker."""

import sys

from dpsad_core.cli import main

sys.exit(main())
