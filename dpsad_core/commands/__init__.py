"""Sub-commands of ``dpsad-core`` that live outside ``cli.py``, one module per area.

Each module has ``register(commands)``, which adds its sub-parsers to the ``dpsad-core`` parser.
Handlers import heavy modules (torch) inside the function so ``--help`` stays fast.
"""

from __future__ import annotations

COMMAND_MODULES = ("export", "ledger", "evaluation", "audit", "rdm")
