"""Class folders: one subfolder per class holding PNG/JPEG/BMP/TIFF images and DICOM files.

::

    xrays/
      normal/     a.png  b.dcm  series1/c.dcm
      pneumonia/  d.png  ...

Class names are the subfolder names, sorted. Files may sit in nested folders inside a class folder
(DICOM studies often do). Hidden files and folders (names starting with ".") are ignored; any other
file must have a known image extension, so that a stray file never silently changes the data.
Only regular files are read; special files, symbolic link loops and a folder reached twice
through a symbolic link are refused by name (see :mod:`.regular_files`). The number of classes
and of image files is capped (see :mod:`.limits`) before any image is decoded.
"""

from __future__ import annotations

from pathlib import Path

from dpsad_core.data import limits
from dpsad_core.data.dataset import ImageDataset
from dpsad_core.data.files import RecordCollector
from dpsad_core.data.imaging import IMAGE_SUFFIXES
from dpsad_core.data.regular_files import FolderVisits, path_kind, unreachable
from dpsad_core.errors import DataImportError

_KNOWN = ", ".join(sorted(IMAGE_SUFFIXES))


def is_hidden(path: Path) -> bool:
    return path.name.startswith(".")


def load_class_folder(root: Path, *, name: str, resolution: int | None, channels: int | None,
                      skip_corrupt: bool) -> ImageDataset:
    """Import a folder of class subfolders.

    Non-square images are resized to square; see :func:`dpsad_core.data.load_dataset` for the
    rules on resolution, channels and unreadable files.
    """
    visits = FolderVisits()
    visits.enter(root)
    entries = [entry for entry in _listing(root) if not is_hidden(entry)]
    kinds = {entry: path_kind(entry) for entry in entries}
    class_dirs = [entry for entry in entries if kinds[entry] == "dir"]
    stray = [entry for entry in entries if kinds[entry] != "dir"]
    if not class_dirs:
        raise DataImportError(
            "not a recognised dataset folder: it has no class subfolders and no MNIST IDX files",
            path=root, remedy="put the images in one subfolder per class, or pass a CSV manifest, "
                              "an MNIST IDX folder or a MedMNIST .npz")
    if stray:
        raise DataImportError(
            f"file outside the class subfolders: {stray[0].name}"
            + (f" (and {len(stray) - 1} more)" if len(stray) > 1 else ""), path=stray[0],
            remedy="move images into the subfolder of their class and remove other files")
    limits.MAX_CLASSES.check(len(class_dirs), what="class subfolders", path=root)

    # List every file first: the caps and the special-file checks come before any decoding.
    files_by_class: dict[Path, list[Path]] = {}
    total = 0
    for class_dir in class_dirs:
        files_by_class[class_dir] = _class_files(class_dir, visits, listed_before=total)
        total += len(files_by_class[class_dir])

    collector = RecordCollector(skip_corrupt=skip_corrupt)
    for class_dir, files in files_by_class.items():
        if not files:
            raise DataImportError(f"class folder {class_dir.name!r} holds no images",
                                  path=class_dir,
                                  remedy="add images to it or remove the empty folder")
        kept = sum(collector.add_file(path, class_dir.name) for path in files)
        if kept == 0:
            raise DataImportError(f"no readable images in class folder {class_dir.name!r} (all "
                                  f"{len(files)} skipped as unreadable)", path=class_dir,
                                  remedy="replace the damaged files or remove the folder")
    return collector.build(name=name, source=root, resolution=resolution, channels=channels)


def _class_files(class_dir: Path, visits: FolderVisits, *, listed_before: int) -> list[Path]:
    """Image files under ``class_dir`` in sorted order; an unknown extension is an error.

    ``listed_before`` files were found in earlier classes; together they may not pass the cap on
    records, checked as the walk goes so that a folder of millions of files stops early.
    """
    files: list[Path] = []
    pending = [class_dir]
    while pending:
        folder = pending.pop()
        visits.enter(folder)
        for entry in _listing(folder):
            if is_hidden(entry):
                continue
            if path_kind(entry) == "dir":
                pending.append(entry)
            elif entry.suffix.lower() in IMAGE_SUFFIXES:
                files.append(entry)
                limits.MAX_RECORDS.check(listed_before + len(files), what="image files found",
                                         path=class_dir)
            else:
                raise DataImportError(
                    f"unknown file type {entry.suffix or '(no extension)'!r}; known: {_KNOWN}",
                    path=entry, remedy="remove the file or convert it to PNG")
    return sorted(files)


def _listing(folder: Path) -> list[Path]:
    try:
        return sorted(folder.iterdir())
    except OSError as exc:
        raise unreachable(folder, exc) from None
