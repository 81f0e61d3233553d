"""Synthetic dataset bundles: images, labels, Croissant metadata, a signed privacy report, a verifier.

``export_bundle`` (a generator of events) writes a bundle from a finished run; ``verify_bundle``
checks one. Names are resolved lazily so that ``dpsad_core.export.verify`` can be imported (and a
bundle verified) without numpy or torch.
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "export_bundle": "dpsad_core.export.bundle",
    "ExportOptions": "dpsad_core.export.bundle",
    "verify_bundle": "dpsad_core.export.verify",
    "VerifyResult": "dpsad_core.export.verify",
    "BundleError": "dpsad_core.export.layout",
    "SignerInfo": "dpsad_core.export.signing",
    "load_or_create_signing_key": "dpsad_core.export.signing",
    "export_public_key": "dpsad_core.export.signing",
    "import_private_key": "dpsad_core.export.signing",
    "signer_info": "dpsad_core.export.signing",
    "key_path": "dpsad_core.export.signing",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_LAZY[name]), name)
