"""dpsad_core: differentially private synthetic image data, Qt-free.

The library behind the ``dpsad-core`` CLI and the desktop workbench. Heavy modules (torch, opacus)
are imported by the submodules that need them, never here, so ``import dpsad_core`` stays cheap.
"""

__version__ = "0.1.0"
