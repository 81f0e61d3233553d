"""The sub-commands of ``dpsad-core``, one module per area (``cli.py`` only assembles and runs them).

Each module has ``register(commands)``, which adds its sub-parsers to the ``dpsad-core`` parser.
Handlers import heavy modules (torch) inside the function so ``--help`` stays fast.
"""

from __future__ import annotations

#: In the order ``dpsad-core --help`` lists them.
COMMAND_MODULES = ("data", "train", "sampling", "runs", "export", "ledger", "evaluation", "audit", "rdm")
