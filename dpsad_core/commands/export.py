"""``dpsad-core export``, ``verify`` and ``keys``: shareable bundles, their check, the signing key.

``verify`` imports neither torch nor numpy (a colleague checks a bundle on any machine); ``export``
imports them inside its handler.
"""

from __future__ import annotations

import argparse
import math
import sys

from dpsad_core.commands import options as typed
from dpsad_core.commands.common import add_workspace_option, print_json, workspace_from_args
from dpsad_core.commands.workers import add_worker_options, run_with_workers
from dpsad_core.errors import ConfigError


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``export``, ``verify`` and ``keys`` to the ``dpsad-core`` parser."""
    sub = commands.add_parser(
        "export", help="sample a finished run (or take a DP-RDM run's images) into a signed, shareable bundle",
        description="Writes PNG images (one folder per class), labels.csv, croissant.json, privacy-report.json "
                    "and .html, a MANIFEST of sha256 sums and its Ed25519 signature. Nothing derived from the "
                    "private data leaves except the DP-released model's samples and data-independent numbers. "
                    "A DP-RDM run ('rdm generate') has no model: the bundle holds the images it generated (all, or "
                    "a seeded subset with --count/--per-class), never new ones; example-query images go in "
                    "images/example-queries/.")
    sub.add_argument("run", help="run id or folder (a finished run)")
    amount = sub.add_mutually_exclusive_group()
    amount.add_argument("--per-class", type=typed.images_per_class(), metavar="N",
                        help="N images of every class (required for a trained run, unless --count)")
    amount.add_argument("--count", type=typed.image_count(), metavar="N",
                        help="N images in all, classes as even as possible (a DP-RDM run: default all it made)")
    sub.add_argument("--out", help="bundle folder to create (or .zip with --zip); default: "
                                   "<workspace>/exports/<run id>")
    sub.add_argument("--zip", action="store_true", help="write one .zip instead of a folder")
    sub.add_argument("--npz", action="store_true", help="also write samples.npz (images and labels) for ML users")
    sub.add_argument("--research", action="store_true",
                     help="allow a run that is NOT differentially private; the bundle is stamped as such")
    sub.add_argument("--include-private-diagnostics", action="store_true",
                     help="add the loss curves of phases that read the private data and the run's evaluation "
                          "results: computed without noise, so OUTSIDE the privacy guarantee (labelled as such)")
    sub.add_argument("--sampler", default="ddim", choices=["ddim", "ddpm"])
    sub.add_argument("--steps", type=typed.sampler_steps(), help="sampler steps (default: the run's setting)")
    sub.add_argument("--generator", default="release", choices=["release", "teacher"],
                     help="which network samples: release (the run's released model; for the dpsad recipe its few-step "
                          "student) or teacher (the DP teacher a student was distilled from, with DDIM)")
    sub.add_argument("--guidance", type=typed.guidance(), help="classifier-free guidance weight (default: the run's)")
    sub.add_argument("--seed", type=typed.seed(), default=0)
    add_worker_options(sub, work="sample the images")
    add_workspace_option(sub)
    sub.add_argument("--json", action="store_true", help="end with one JSON object on the last line of stdout")
    sub.set_defaults(handler=_cmd_export)

    sub = commands.add_parser(
        "verify", help="check a bundle's signature and every file (no torch, no network)",
        description="Exits 0 and prints a summary for an intact bundle; exits 8 and names each failure for a "
                    "changed, added or removed file, an edited report, a wrong key or a bad signature. A malformed, "
                    "ambiguous or oversized bundle (duplicate names, links, '..', encrypted or corrupt members, "
                    "zip bombs) is refused before it is read, with one line naming the member; the limits and the "
                    "DPSAD_BUNDLE_MAX_* variables that raise them are in docs/limits.md.")
    _verify_arguments(sub)
    sub.set_defaults(handler=_cmd_verify)

    sub = commands.add_parser(
        "keys", help="show, export or import the Ed25519 key that signs bundles",
        description="Without options: show the public key and its fingerprint (the key is created on first use, "
                    "owner-only). The private key is never printed.")
    action = sub.add_mutually_exclusive_group()
    action.add_argument("--export-public", metavar="FILE", help="write the public key (PEM) to FILE")
    action.add_argument("--import-private", metavar="FILE",
                        help="make an organisation's Ed25519 private key (PEM) the signing key; the old key is "
                             "kept as a backup beside it")
    sub.add_argument("--json", action="store_true")
    sub.set_defaults(handler=_cmd_keys)


def _verify_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("bundle", help="bundle folder or .zip")
    sub.add_argument("--public-key", metavar="FILE",
                     help="the signer's public key (PEM, 'ssh-ed25519 ...' or hex): the bundle must be signed by it")
    sub.add_argument("--json", action="store_true", help="print the result as one JSON object")


# -- verify ------------------------------------------------------------------------------------------
def verify_main(argv: list[str]) -> int:
    """``dpsad-core verify`` without building the whole CLI (used to prove it needs no torch or numpy)."""
    from dpsad_core.errors import DpsadError

    parser = argparse.ArgumentParser(prog="dpsad-core verify")
    _verify_arguments(parser)
    try:
        return _cmd_verify(parser.parse_args(argv))
    except DpsadError as error:
        print(f"dpsad-core: error: {error}", file=sys.stderr)
        return error.exit_code


def _cmd_verify(args: argparse.Namespace) -> int:
    from dpsad_core.export.layout import BundleError
    from dpsad_core.export.verify import verify_bundle

    result = verify_bundle(args.bundle, public_key=args.public_key)
    if args.json:
        print_json({"bundle": str(result.path), "ok": result.ok, "problems": list(result.problems),
                    "summary": result.summary, "signer": result.signer_fingerprint, "key_pinned": result.key_pinned})
    elif result.ok:
        summary = result.summary
        print(f"OK: {result.path} is intact and signed")
        if summary.get("private"):
            print(f"  guarantee: ({_number(summary.get('epsilon'))}, {_number(summary.get('delta'))})-differentially "
                  f"private per {summary.get('unit_of_privacy')}")
        else:
            print("  guarantee: NONE: NOT DIFFERENTIALLY PRIVATE (research export)")
        print(f"  recipe:    {summary.get('recipe')}   run {summary.get('run_id')}   dataset {summary.get('dataset')}")
        print(f"  images:    {summary.get('images')}")
        print(f"  signer:    {result.signer_fingerprint}")
        if not result.key_pinned:
            print("  note: checked against the key inside the bundle; the signer's identity is only as trusted as "
                  "this fingerprint: compare it with one you got from the signer, or pass --public-key FILE")
    else:
        print(f"FAILED: {result.path}")
        for problem in result.problems:
            print(f"  {problem}")
    if result.ok:
        return 0
    first = result.problems[0] if result.problems else "unknown"
    print(f"dpsad-core: error: {result.path} failed verification: {len(result.problems)} problem(s), first: {first}",
          file=sys.stderr)
    return BundleError.exit_code


def _number(value) -> str:
    return f"{value:.4g}" if isinstance(value, (int, float)) and math.isfinite(value) else str(value)


# -- keys --------------------------------------------------------------------------------------------
def _cmd_keys(args: argparse.Namespace) -> int:
    from dpsad_core.export import signing

    if args.import_private:
        info, backup = signing.import_private_key(args.import_private)
        extra = {"imported_from": args.import_private, "backup_of_old_key": str(backup) if backup else None}
    elif args.export_public:
        info = signing.export_public_key(typed.output_file(args.export_public, "--export-public"))
        extra = {"exported_to": args.export_public}
    else:
        info = signing.signer_info(signing.load_or_create_signing_key().public_key())
        extra = {}
    if args.json:
        print_json({**info.to_dict(), "key_file": str(signing.key_path()), **extra})
        return 0
    if args.import_private:
        print(f"imported the signing key from {args.import_private}")
        print(f"  old key kept at: {backup}" if backup else "  (it was already the signing key)")
    if args.export_public:
        print(f"wrote the public key to {args.export_public}")
    print(f"algorithm:   {info.algorithm}")
    print(f"public key:  {info.public_key_hex}")
    print(f"fingerprint: {info.fingerprint}")
    print(f"key file:    {signing.key_path()} (private: never share it)")
    return 0


# -- export ------------------------------------------------------------------------------------------
def _cmd_export(args: argparse.Namespace) -> int:
    return run_with_workers(args, _export_here, "export")


def _export_here(args: argparse.Namespace) -> int:
    from dpsad_core.export.bundle import export_bundle

    for name in ("per_class", "count"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {value}", field=name, value=value)
    events = export_bundle(args.run, workspace=workspace_from_args(args), out=args.out, per_class=args.per_class,
                           count=args.count, zip=args.zip, npz=args.npz, research=args.research,
                           include_private_diagnostics=args.include_private_diagnostics, sampler=args.sampler,
                           steps=args.steps, guidance=args.guidance, seed=args.seed, device=args.device,
                           generator=args.generator)
    finished = consume_export(events)
    summary = finished.summary
    if args.json:
        print_json(summary)
    else:
        print_export_summary(finished)
    return 0


def consume_export(events):
    """Show an export's progress on stderr and return its ExportFinished event."""
    from tqdm import tqdm

    from dpsad_core.events import ExportFinished, ExportProgress, ExportStarted

    bar = None
    finished = None
    for event in events:
        if isinstance(event, ExportStarted):
            print(f"exporting {event.total_images} images from run {event.run_id}", file=sys.stderr)
            if not event.private:
                print("WARNING: this run is NOT differentially private: the bundle is stamped as such",
                      file=sys.stderr)
            bar = tqdm(total=event.total_images, desc="sampling", file=sys.stderr, dynamic_ncols=True, disable=None)
        elif isinstance(event, ExportProgress) and bar is not None:
            bar.set_description(event.stage)
            bar.n = event.done if bar.total is None else min(event.done, bar.total)
            bar.refresh()
        elif isinstance(event, ExportFinished):
            finished = event
    if bar is not None:
        bar.close()
    return finished


def print_export_summary(finished) -> None:
    summary = finished.summary
    if summary["private"]:
        print(f"exported {summary['images']} images: ({summary['epsilon']:.4g}, {summary['delta']:.3g})-differentially "
              f"private per {summary['unit_of_privacy']}")
    else:
        print(f"exported {summary['images']} images: NOT DIFFERENTIALLY PRIVATE (research export)")
    print(f"  bundle:  {finished.bundle_path}")
    print(f"  report:  {summary['report']}")
    print(f"  signer:  {summary['signer']}")
    print(f"  check it with: dpsad-core verify {finished.bundle_path}")




# -- demo --------------------------------------------------------------------------------------------
DEMO_PER_CLASS = 10


def demo_export_and_verify(result: dict, *, workspace, json_out: bool) -> int:
    """End ``dpsad-core demo``: export a bundle from the demo run, verify it, and say where it went."""
    from dpsad_core.export.bundle import export_bundle
    from dpsad_core.export.layout import BundleError
    from dpsad_core.export.verify import verify_bundle
    from dpsad_core.runs.records import RunResult

    run = RunResult.from_dict(result, source="the demo run's result")
    finished = consume_export(export_bundle(run.run_id, workspace=workspace, per_class=DEMO_PER_CLASS,
                                            device=run.device or "auto"))
    verified = verify_bundle(finished.bundle_path)
    if json_out:
        print_json({**result, "bundle": str(finished.bundle_path), "bundle_verified": verified.ok,
                    "bundle_problems": list(verified.problems), "signer": verified.signer_fingerprint})
    else:
        print_export_summary(finished)
        status = "OK" if verified.ok else "FAILED: " + "; ".join(verified.problems)
        print(f"  verified: {status} (signer {verified.signer_fingerprint})")
    return 0 if verified.ok else BundleError.exit_code
