"""What a bundle contains, by name, and the error a broken bundle raises.

This module is imported by the verifier, so it uses the standard library only (no numpy, no torch).

Layout of a bundle folder (or of the single top folder inside a bundle zip)::

    images/<class>/<class>-000001.png   the synthetic images, one folder per class (a DP-RDM run's
                                        example-query images in images/example-queries/, label -1)
    labels.csv                          file_name,label,class_name
    samples.npz                         optional: images (uint8) and labels for ML users
    sample-grid.png                     a few samples per class (also embedded in the HTML report)
    croissant.json                      Croissant 1.0 metadata with Responsible-AI fields
    privacy-report.json                 the privacy report, machine-readable
    privacy-report.html                 the same report for people, self-contained
    signer-public-key.pem               the Ed25519 public key that signed the bundle
    signer.json                         algorithm, public key (hex) and its fingerprint
    MANIFEST                            "sha256  relative/path" per file, sorted, all but MANIFEST.sig
    MANIFEST.sig                        detached Ed25519 signature over the MANIFEST bytes (hex)
"""

from __future__ import annotations

from dpsad_core.errors import DpsadError
from dpsad_core.runs.records import NOT_DP_STAMP as NOT_DP_STAMP  # the stamp's words, with the run records

MANIFEST = "MANIFEST"
SIGNATURE = "MANIFEST.sig"
PUBLIC_KEY = "signer-public-key.pem"
SIGNER = "signer.json"
REPORT_JSON = "privacy-report.json"
REPORT_HTML = "privacy-report.html"
CROISSANT = "croissant.json"
LABELS = "labels.csv"
NPZ = "samples.npz"
GRID = "sample-grid.png"
IMAGES_DIR = "images"

NOT_DP_SUFFIX = "NOT-DIFFERENTIALLY-PRIVATE"

#: Prefix of the temporary sibling an export is built in; it never looks like a finished bundle.
PARTIAL_PREFIX = ".partial-"

SIGNATURE_ALGORITHM = "Ed25519"
SIGNATURE_BYTES = 64


class BundleError(DpsadError):
    """A bundle cannot be read, or it fails verification. ``problems`` names each failure."""

    exit_code = 8

    def __init__(self, message: str, *, path: object = None, problems: tuple[str, ...] = (),
                 remedy: str | None = None) -> None:
        self.path = path
        self.problems = tuple(problems)
        super().__init__(message, remedy=remedy)
