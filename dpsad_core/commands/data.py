"""``dpsad-core import`` and ``datasets``: read a dataset, check it, save it in the workspace; list them."""

from __future__ import annotations

import argparse

from dpsad_core.commands import options as typed
from dpsad_core.commands.common import (
    add_workspace_option,
    print_json,
    workspace_from_args,
)
from dpsad_core.errors import ConfigError


def register(commands: argparse._SubParsersAction) -> None:
    sub = commands.add_parser("import", help="read a dataset, check it, and save it in the workspace",
                              description="Formats: a folder with one subfolder per class (PNG, JPEG, BMP, TIFF, "
                                          "DICOM); a CSV manifest (path,label[,patient_id]); MNIST IDX files; "
                                          "a MedMNIST .npz.",
                              epilog="Sizes are capped (pixels per image, records, classes, data bytes); the "
                                     "DPSAD_MAX_* environment variables raise the caps: see docs/limits.md.")
    sub.add_argument("path", help="folder, .csv, IDX file or folder, or .npz")
    sub.add_argument("--name", help="name to save it under (default: derived from the path)")
    sub.add_argument("--split", default="train", help="split for IDX (train/test) and .npz (train/val/test) files")
    _data_options(sub)
    sub.add_argument("--duplicates", choices=["refuse", "merge", "drop"], default="refuse",
                     help="records that repeat another exactly: refuse the import (default), merge each group into "
                          "one privacy unit, or drop all but the first copy")
    sub.add_argument("--classes", metavar="A,B,C",
                     help="the class names, in label order, that you declare public (required for class folders, "
                          "CSV manifests and DICOM; records with another label are refused)")
    sub.add_argument("--public-count", action="store_true",
                     help="declare the number of records public: reports then state it exactly (otherwise a run "
                          "publishes a noisy count, spent from the budget, rounded down to 2 significant figures, "
                          "and computes the sample rate from that)")
    sub.add_argument("--public", action="store_true",
                     help="declare the data public: it may then train a DP-RDM public model (rdm train-public); "
                          "data first seen as private stays private")
    add_workspace_option(sub)
    sub.add_argument("--json", action="store_true", help="print the summary as JSON")
    sub.set_defaults(handler=_cmd_import)


    sub = commands.add_parser("datasets", help="list the datasets saved in the workspace")
    add_workspace_option(sub)
    sub.add_argument("--json", action="store_true")
    sub.set_defaults(handler=_cmd_datasets)


def _data_options(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--resolution", type=typed.integer("--resolution", minimum=1),
                     help="resize every image to this size")
    sub.add_argument("--grey", action="store_true", help="convert colour images to grey")
    sub.add_argument("--skip-corrupt", action="store_true", help="skip unreadable images and report how many")
    sub.add_argument("--min-records", type=typed.integer("--min-records", minimum=0), default=100,
                     help="refuse datasets with fewer privacy units")


def _cmd_import(args: argparse.Namespace) -> int:
    from dpsad_core.data import load_dataset, save_dataset
    from dpsad_core.data.public_metadata import parse_classes, rare_class_warnings
    from dpsad_core.privacy.ledger import PrivacyLedger
    from dpsad_core.privacy.ledger_datasets import ledger_identity

    dataset = load_dataset(args.path, split=args.split, resolution=args.resolution,
                           channels=1 if args.grey else None, skip_corrupt=args.skip_corrupt,
                           min_records=args.min_records, name=args.name, duplicates=args.duplicates,
                           classes=parse_classes(args.classes) if args.classes else None,
                           public_count=args.public_count)
    if dataset.class_names_from == "data":
        # Read off folder or label names: a single record could add a class to every release.
        raise ConfigError(f"the class names of {args.path!r} come from its folder or label names "
                          f"({', '.join(dataset.class_names)}): a release shows the class list, so declare it",
                          field="classes", remedy="pass the classes you may make public, e.g. --classes "
                                                  f"{','.join(dataset.class_names[:3])}")
    workspace = workspace_from_args(args)
    folder = save_dataset(dataset, workspace)
    # Compared with every dataset seen before: one that shares records shares its privacy budget.
    overlaps = PrivacyLedger(workspace).overlaps(ledger_identity(workspace, dataset, public=args.public))
    summary = dict(dataset.summary(workspace), saved_to=str(folder), overlaps=overlaps)
    if args.json:
        print_json(summary)
    else:
        print(f"imported {summary['num_records']} images in {summary['num_classes']} classes "
              f"({summary['channels']}x{summary['resolution']}x{summary['resolution']}) as '{dataset.name}'")
        print(f"  class counts: {summary['class_counts']}")
        if dataset.skipped:
            print(f"  skipped {len(dataset.skipped)} unreadable file(s)")
        if dataset.merged_duplicates:
            done = "merged into their record's privacy unit" if args.duplicates == "merge" else "dropped"
            print(f"  {dataset.merged_duplicates} exact duplicate record(s) {done}")
        for overlap in overlaps:
            print(f"  shares records with {overlap['name'] or overlap['fingerprint'][:24]}: its privacy budget is "
                  "shared (see dpsad-core ledger)")
        for warning in rare_class_warnings(dataset):
            print(f"  warning: {warning}")
        print(f"  fingerprint:  {summary['fingerprint']}")
        print(f"  saved to:     {folder}")
        print(f"train on it with: dpsad-core train --data {dataset.name} --epsilon 10")
    return 0


def _cmd_datasets(args: argparse.Namespace) -> int:
    from dpsad_core.data import list_saved_datasets

    datasets = list_saved_datasets(workspace_from_args(args))
    if args.json:
        print_json(datasets)
        return 0
    if not datasets:
        print("no datasets yet: import one with 'dpsad-core import PATH'")
    for d in datasets:
        print(f"{d['name']:<32} {d['num_records']:>7} records  {d['num_classes']:>3} classes  {d['fingerprint'][:28]}")
    return 0
