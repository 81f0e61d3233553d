"""Shared image helpers: decoding with PIL, value scaling, channel conversion, resizing, stacking.

Every importer ends in the same place: a float32 array ``N x C x R x R`` with values in [0, 1]. File
importers collect one array per file (``H x W`` for grey, ``H x W x 3`` for colour) and call
:func:`stack_images`; array importers (IDX, MedMNIST, the demo) call :func:`batch_to_chw`.
"""

from __future__ import annotations

import contextlib
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from dpsad_core.data import limits
from dpsad_core.data.regular_files import open_regular
from dpsad_core.errors import ConfigError, DataImportError, DpsadError

PIL_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})
DICOM_SUFFIXES = frozenset({".dcm"})
IMAGE_SUFFIXES = PIL_SUFFIXES | DICOM_SUFFIXES

SKIP_REMEDY = "pass skip_corrupt=True (--skip-corrupt) to skip unreadable files"
CHANNELS_REMEDY = "pass channels=1 (--grey) to convert colour to grey or channels=3"
MAX_RESOLUTION = 4096

# ITU-R 601-2 luma, the transform PIL's "L" conversion applies. Computed in float here so that
# 16-bit sources (DICOM, 16-bit PNG) keep their precision instead of being rounded to 8 bits first.
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)

# Modes PIL can convert to RGB without losing meaning (alpha is dropped, palettes are expanded).
_TO_RGB_MODES = frozenset({"RGBA", "RGBX", "RGBa", "P", "PA", "CMYK", "YCbCr", "LAB", "HSV"})
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})


class UnreadableImageError(DataImportError):
    """A file that should hold an image cannot be decoded.

    File importers skip such files (and record them) when ``skip_corrupt=True``; every other
    :class:`DataImportError` stops the import whatever that setting.
    """

    def __init__(self, message: str, *, path: str | Path, row: int | None = None) -> None:
        super().__init__(message, path=path, row=row, remedy=SKIP_REMEDY)


def validate_options(*, resolution: int | None, channels: int | None) -> None:
    """Raise :class:`ConfigError` for a resolution or channel count the importers cannot honour."""
    if resolution is not None:
        if isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer)):
            raise ConfigError(f"resolution must be a whole number, got {resolution!r}",
                              field="resolution", value=resolution, remedy="e.g. --resolution 28")
        if not 1 <= int(resolution) <= MAX_RESOLUTION:
            raise ConfigError(f"resolution {resolution} is outside 1..{MAX_RESOLUTION}",
                              field="resolution", value=resolution, remedy="e.g. --resolution 28")
    if channels is not None and (isinstance(channels, bool) or channels not in (1, 3)):
        raise ConfigError(f"channels must be 1 (grey) or 3 (colour), got {channels!r}",
                          field="channels", value=channels, remedy="pass channels=1 or channels=3")


def to_unit_float(array: np.ndarray, *, path: str | Path, what: str) -> np.ndarray:
    """Scale pixel values to float32 in [0, 1].

    Integers must lie in 0..255 (8-bit data). Floats must be finite and lie in [0, 1] (kept as they
    are) or in [0, 255] (divided by 255). ``what`` names the array in messages (an npz key, say).
    """
    if array.dtype == np.bool_ or not (np.issubdtype(array.dtype, np.integer)
                                       or np.issubdtype(array.dtype, np.floating)):
        raise DataImportError(f"{what} has dtype {array.dtype}; expected uint8 or float pixels",
                              path=path, remedy="save the images as uint8 (0..255)")
    if array.size == 0:
        return array.astype(np.float32)
    if np.issubdtype(array.dtype, np.integer):
        lowest, highest = int(array.min()), int(array.max())
        if lowest < 0 or highest > 255:
            raise DataImportError(f"{what} holds integer values in {lowest}..{highest}; expected 0..255",
                                  path=path, remedy="save the images as uint8 (0..255)")
        return np.divide(array, np.float32(255), dtype=np.float32)
    finite = np.isfinite(array)
    if not finite.all():
        bad = array[~finite]
        raise DataImportError(
            f"{what} contains {int(np.isnan(bad).sum())} NaN and {int(np.isinf(bad).sum())} "
            "infinite values", path=path, remedy="replace them with valid pixel values")
    low, high = float(array.min()), float(array.max())
    if low >= 0.0 and high <= 1.0:
        return array.astype(np.float32)
    if low >= 0.0 and high <= 255.0:
        return np.divide(array, np.float32(255), dtype=np.float32)
    raise DataImportError(f"{what} holds float values in [{low:g}, {high:g}]; expected [0, 1] or "
                          "[0, 255]", path=path, remedy="rescale the images to [0, 1]")


@contextlib.contextmanager
def captured_warnings() -> Iterator[list[warnings.WarningMessage]]:
    """Record the warnings a third-party decoder emits instead of letting them reach stderr.

    Decoders (PIL, pydicom, numpy) warn about oddities in the files they read; next to our one-line
    error those lines only confuse. The readers check what matters themselves (sizes, finite values)
    and drop the rest; the list is there for a reader that wants to turn one into an error.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught


def read_pil_image(path: Path) -> np.ndarray:
    """Decode a PNG/JPEG/BMP/TIFF file to float32 ``H x W`` (grey) or ``H x W x 3`` (colour).

    Palette and RGBA images become RGB (alpha dropped); 16-bit grey is divided by 65535. Only the
    first frame of a multi-frame file is read. The size is checked against ``DPSAD_MAX_PIXELS``
    from the header, before decoding.
    """
    max_pixels = limits.MAX_PIXELS.value()
    # PIL's own decompression-bomb check (a warning above the limit, an error above twice it) uses
    # the same limit, so its verdict and ours agree; both end in the same one-line error.
    Image.MAX_IMAGE_PIXELS = max_pixels
    with open_regular(path) as handle, captured_warnings():
        try:
            image = Image.open(handle)
        except Image.DecompressionBombError:
            raise limits.MAX_PIXELS.exceeded(f"image has more than {2 * max_pixels:,} pixels",
                                             path=path) from None
        except UnidentifiedImageError:
            raise UnreadableImageError("not a readable image (unknown or damaged format)",
                                       path=path) from None
        except DpsadError:
            raise
        except Exception as exc:  # noqa: BLE001 - decoders raise many types on damaged input
            raise UnreadableImageError(f"cannot decode image ({type(exc).__name__}: {exc})",
                                       path=path) from None
        with image:
            width, height = image.size
            limits.MAX_PIXELS.check(width * height, what=f"image is {width}x{height}", path=path)
            try:
                image.load()
            except Image.DecompressionBombError:  # a frame or tile larger than the header said
                raise limits.MAX_PIXELS.exceeded("a frame of the image is larger than its header "
                                                 "says", path=path) from None
            except DpsadError:
                raise
            except Exception as exc:  # noqa: BLE001 - as above: any decoder failure is damage
                raise UnreadableImageError(f"cannot decode image ({type(exc).__name__}: {exc})",
                                           path=path) from None
            return _pil_to_array(image, path)


def _pil_to_array(image: Image.Image, path: Path) -> np.ndarray:
    mode = image.mode
    if mode in ("1", "L", "LA", "La"):
        return np.divide(np.asarray(image.convert("L")), np.float32(255), dtype=np.float32)
    if mode == "RGB" or mode in _TO_RGB_MODES:
        rgb = image if mode == "RGB" else image.convert("RGB")
        return np.divide(np.asarray(rgb), np.float32(255), dtype=np.float32)
    if mode in _SIXTEEN_BIT_MODES or mode == "I":
        pixels = np.asarray(image)
        if pixels.size and (int(pixels.min()) < 0 or int(pixels.max()) > 65535):
            raise DataImportError(f"{mode} image holds values outside 0..65535", path=path,
                                  remedy="convert it to an 8- or 16-bit PNG")
        return np.divide(pixels, np.float32(65535), dtype=np.float32)
    if mode == "F":
        return to_unit_float(np.asarray(image), path=path, what="float image")
    raise DataImportError(f"unsupported image mode {mode!r}", path=path,
                          remedy="convert it to a grey or RGB PNG")


def luma(rgb: np.ndarray) -> np.ndarray:
    """Grey from colour (last axis of length 3), with PIL's "L" weights; stays in [0, 1]."""
    return np.clip(rgb @ LUMA_WEIGHTS, 0.0, 1.0).astype(np.float32, copy=False)


def resize_plane(plane: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of one ``H x W`` float plane to ``size x size`` (non-square: squashed)."""
    if plane.shape == (size, size):
        return plane
    image = Image.fromarray(np.ascontiguousarray(plane, dtype=np.float32))  # mode "F"
    resized = np.asarray(image.resize((size, size), Image.Resampling.BILINEAR), dtype=np.float32)
    # Bilinear weights are convex, but float rounding can step a hair outside [0, 1].
    return np.clip(resized, 0.0, 1.0)


def to_chw(image: np.ndarray, channels: int, size: int) -> np.ndarray:
    """One ``H x W`` or ``H x W x 3`` image to ``channels x size x size``."""
    if image.ndim == 2:
        plane = resize_plane(image, size)
        return plane[None] if channels == 1 else np.repeat(plane[None], 3, axis=0)
    if channels == 1:
        return resize_plane(luma(image), size)[None]
    return np.stack([resize_plane(image[..., k], size) for k in range(3)])


def choose_size(shapes: Counter[tuple[int, int]], resolution: int | None,
                source: str | Path) -> int:
    """The output side length: ``resolution``, else the one square size all images share."""
    if resolution is not None:
        return int(resolution)
    if len(shapes) == 1:
        (height, width), = shapes
        if height == width:
            return height
        raise DataImportError(f"images are {width}x{height} (width x height), not square",
                              path=source,
                              remedy=f"pass resolution, e.g. --resolution {min(height, width)}")
    common = shapes.most_common()
    listed = ", ".join(f"{w}x{h} ({n} images)" for (h, w), n in common[:10])
    more = f" and {len(common) - 10} more" if len(common) > 10 else ""
    (height, width), _ = common[0]
    raise DataImportError(f"images have {len(common)} different sizes (width x height): "
                          f"{listed}{more}", path=source,
                          remedy=f"pass resolution, e.g. --resolution {min(height, width)}")


def stack_images(images: Sequence[np.ndarray], *, origins: Sequence[str], source: str | Path,
                 resolution: int | None, channels: int | None) -> np.ndarray:
    """Stack per-file arrays into float32 ``N x C x R x R``.

    Grey and colour may be mixed only when ``channels`` says which to convert to; sizes may differ
    only when ``resolution`` is given. Non-square images are resized to square (bilinear).
    """
    colour = [i for i, image in enumerate(images) if image.ndim == 3]
    grey_count = len(images) - len(colour)
    if channels is None and colour and grey_count:
        first_grey = next(i for i, image in enumerate(images) if image.ndim == 2)
        raise DataImportError(
            f"images mix grey ({grey_count}, e.g. {origins[first_grey]}) and colour "
            f"({len(colour)}, e.g. {origins[colour[0]]})", path=source, remedy=CHANNELS_REMEDY)
    target_channels = channels or (3 if colour else 1)
    size = choose_size(Counter(image.shape[:2] for image in images), resolution, source)
    limits.check_float_images(len(images), target_channels, size, size, path=source)
    out = np.empty((len(images), target_channels, size, size), dtype=np.float32)
    for index, image in enumerate(images):
        out[index] = to_chw(image, target_channels, size)
    return out


def batch_to_chw(array: np.ndarray, *, resolution: int | None, channels: int | None,
                 source: str | Path) -> np.ndarray:
    """``N x H x W`` (grey) or ``N x H x W x 3`` (colour) float32 in [0, 1] to ``N x C x R x R``.

    Without resizing or conversion this is a reshape (fast for 60,000 MNIST images); otherwise each
    image goes through :func:`to_chw`. Non-square images are resized to square (bilinear).
    """
    is_colour = array.ndim == 4
    target_channels = channels or (3 if is_colour else 1)
    height, width = array.shape[1:3]
    size = choose_size(Counter({(height, width): len(array)}), resolution, source)
    limits.check_float_images(len(array), target_channels, size, size, path=source)
    if size == height == width:
        if is_colour:
            planes = luma(array)[:, None] if target_channels == 1 else array.transpose(0, 3, 1, 2)
        else:
            planes = array[:, None]
            if target_channels == 3:
                planes = np.repeat(planes, 3, axis=1)
        return np.ascontiguousarray(planes, dtype=np.float32)
    out = np.empty((len(array), target_channels, size, size), dtype=np.float32)
    for index in range(len(array)):
        out[index] = to_chw(array[index], target_channels, size)
    return out


def chw_to_hwc(images: np.ndarray) -> np.ndarray:
    """``N x C x H x W`` back to the importer layout (``N x H x W`` or ``N x H x W x 3``)."""
    return images[:, 0] if images.shape[1] == 1 else images.transpose(0, 2, 3, 1)
