"""Characters and text lines rendered offline from the 22 text fonts that ship with matplotlib.

The fonts come in five families (DejaVu Sans, DejaVu Sans Mono, DejaVu Serif, STIX, Computer Modern), so
a whole family can be held out to measure how a recogniser generalises to a typeface it never saw.
Every sample is drawn from its own seeded random stream: the same arguments always give the same images,
and sample ``i`` does not depend on how many samples were asked for.

Images are grey, dark ink on light paper, float32 in [0, 1] on an 8-bit scale, with a seeded variation of font, size,
position, rotation, stroke contrast, blur and noise. Rendered sets are kept in the course cache.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import string
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset
from tqdm.auto import tqdm

from cvcourse.errors import CvcourseError, unknown_choice
from cvcourse.runtime import cache_dir

DIGITS = string.digits
UPPERCASE = string.ascii_uppercase
LOWERCASE = string.ascii_lowercase

FAMILIES: dict[str, tuple[str, ...]] = {
    "DejaVu Sans": ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSans-BoldOblique.ttf"),
    "DejaVu Sans Mono": ("DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf", "DejaVuSansMono-Oblique.ttf",
                         "DejaVuSansMono-BoldOblique.ttf"),
    "DejaVu Serif": ("DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf", "DejaVuSerif-BoldItalic.ttf"),
    "STIX": ("STIXGeneral.ttf", "STIXGeneralBol.ttf", "STIXGeneralItalic.ttf", "STIXGeneralBolIta.ttf"),
    "Computer Modern": ("cmr10.ttf", "cmb10.ttf", "cmti10.ttf", "cmss10.ttf", "cmtt10.ttf", "cmmi10.ttf"),
}
"""Font family -> the matplotlib font files in it (22 text fonts in all)."""

FONTS: tuple[str, ...] = tuple(font for files in FAMILIES.values() for font in files)
"""Every font file, in family order; dataset font ids index this tuple."""

_RENDER_VERSION = 3  # bump when rendering changes, so cached sets are redrawn


def font_dir() -> Path:
    """The folder of matplotlib's bundled TrueType fonts."""
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


def family_of(font: str) -> str:
    """The family a font file belongs to."""
    for family, files in FAMILIES.items():
        if font in files:
            return family
    raise unknown_choice("font", font, FONTS)


def fonts(families: str | Sequence[str] | None = None) -> tuple[str, ...]:
    """The font files of the given family or families (all 22 when ``None``), in :data:`FONTS` order."""
    if families is None:
        return FONTS
    if isinstance(families, str):
        families = (families,)
    for family in families:
        if family not in FAMILIES:
            raise unknown_choice("font family", family, FAMILIES)
    return tuple(font for font in FONTS if family_of(font) in families)


@functools.lru_cache(maxsize=512)
def _font(font: str, pixels: int):
    from PIL import ImageFont

    return ImageFont.truetype(str(font_dir() / font), pixels)


def _ink(text: str, font: str, pixels: int) -> np.ndarray:
    """Ink coverage (h, w) in [0, 1] of ``text`` set in ``font`` at ``pixels`` px, cropped to its ink."""
    from PIL import Image, ImageDraw

    face = _font(font, pixels)
    left, top, right, bottom = face.getbbox(text)
    canvas = Image.new("L", (max(right - left, 1) + 2, max(bottom - top, 1) + 2), 0)
    ImageDraw.Draw(canvas).text((1 - left, 1 - top), text, font=face, fill=255)
    array = np.asarray(canvas, dtype=np.float32) / 255.0
    rows, cols = np.nonzero(array.max(1))[0], np.nonzero(array.max(0))[0]
    if len(rows) == 0:
        return np.zeros((1, 1), np.float32)
    return array[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def _rotate(ink: np.ndarray, degrees: float) -> np.ndarray:
    """Rotate an ink map counter-clockwise about its centre, growing the canvas to keep every corner."""
    if degrees == 0.0:
        return ink
    from PIL import Image

    image = Image.fromarray(np.ascontiguousarray(ink, dtype=np.float32)).rotate(
        degrees, resample=Image.Resampling.BILINEAR, expand=True, fillcolor=0.0)
    return np.asarray(image, dtype=np.float32)


def render_glyph(char: str, font: str, pixels: int, degrees: float = 0.0) -> np.ndarray:
    """One character's ink coverage (h, w) in [0, 1], tightly cropped, rotated by ``degrees`` (counter-clockwise)."""
    if font not in FONTS:
        raise unknown_choice("font", font, FONTS)
    return _rotate(_ink(char, font, pixels), degrees)


def _gaussian_blur(ink: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Blur each image of a batch (N, 1, H, W) with its own Gaussian sigma (N,) in pixels (0 leaves it as is).

    Zero padding: the ink maps are zero near their borders, so nothing leaks in.
    """
    radius = max(1, int(np.ceil(3 * float(sigma.max())))) if len(sigma) else 1
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (offsets / sigma.clamp_min(1e-3).view(-1, 1)) ** 2)
    kernel = kernel / kernel.sum(1, keepdim=True)  # (N, 2r + 1); a tiny sigma gives a unit impulse
    n = len(ink)
    x = ink.reshape(1, n, *ink.shape[-2:])
    x = torch.nn.functional.conv2d(x, kernel.view(n, 1, 1, -1), padding=(0, radius), groups=n)
    x = torch.nn.functional.conv2d(x, kernel.view(n, 1, -1, 1), padding=(radius, 0), groups=n)
    return x.reshape(ink.shape)


class _Photo:
    """Per-sample photographic variation, drawn from the sample's stream: paper and ink grey levels,
    blur sigma and a noise field. :func:`_develop` applies a batch of them at once."""

    def __init__(self, rng: np.random.Generator, shape: tuple[int, int], blur, noise):
        self.paper = rng.uniform(0.75, 1.0)
        self.ink = rng.uniform(0.0, 0.3)
        self.sigma = rng.uniform(*blur)
        self.noise = (rng.uniform(*noise) * rng.standard_normal(shape)).astype(np.float32)


def _develop(ink: np.ndarray, photos: Sequence[_Photo]) -> torch.Tensor:
    """Ink coverage (N, 1, H, W) -> 8-bit grey photos (uint8) of dark ink on light paper: contrast, blur, noise.

    Eight bits, like a real scan, also keep the cached sets a quarter of the size of float32.
    """
    coverage = _gaussian_blur(torch.from_numpy(ink).clamp(0.0, 1.0), torch.tensor([p.sigma for p in photos]))
    paper = torch.tensor([p.paper for p in photos], dtype=torch.float32).view(-1, 1, 1, 1)
    level = torch.tensor([p.ink for p in photos], dtype=torch.float32).view(-1, 1, 1, 1)
    noise = torch.from_numpy(np.stack([p.noise for p in photos])).unsqueeze(1)
    photo = (paper - (paper - level) * coverage + noise).clamp(0.0, 1.0)
    return (photo * 255.0).round().to(torch.uint8).contiguous()


def _to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 photos -> float32 in [0, 1]."""
    return images.float().div_(255.0)


def _glyph_sample(rng: np.random.Generator, chars: str, font_ids: Sequence[int], image_size: int,
                  scale: tuple[float, float], max_rotation: float) -> tuple[np.ndarray, int, int]:
    """Ink coverage (S, S) of one random character, its label and font id."""
    label = int(rng.integers(len(chars)))
    font_id = int(font_ids[rng.integers(len(font_ids))])
    degrees = rng.uniform(-max_rotation, max_rotation)
    pixels = max(4, int(round(rng.uniform(*scale) * image_size)))
    ink = render_glyph(chars[label], FONTS[font_id], pixels, degrees)
    if max(ink.shape) > image_size - 2:  # too large for the canvas: render smaller
        pixels = max(4, int(pixels * (image_size - 2) / max(ink.shape)))
        ink = render_glyph(chars[label], FONTS[font_id], pixels, degrees)
        while max(ink.shape) > image_size - 2 and pixels > 4:
            pixels -= 1
            ink = render_glyph(chars[label], FONTS[font_id], pixels, degrees)
        ink = ink[:image_size - 2, :image_size - 2]  # only ever crops on a canvas too small for 4 px type
    h, w = ink.shape
    top = int(rng.integers(1, image_size - h)) if image_size - h > 1 else 0
    left = int(rng.integers(1, image_size - w)) if image_size - w > 1 else 0
    canvas = np.zeros((image_size, image_size), np.float32)
    canvas[top:top + h, left:left + w] = ink
    return canvas, label, font_id


def _cached(kind: str, arguments: dict, build):
    """Load a rendered set from the course cache, or build it with ``build()`` and store it atomically."""
    key = hashlib.sha1(json.dumps({"kind": kind, "version": _RENDER_VERSION, **arguments},
                                  sort_keys=True).encode()).hexdigest()[:16]
    path = cache_dir("glyphs") / f"{kind}-{key}.pt"
    if path.exists():
        try:
            return torch.load(path, weights_only=True)
        except Exception:  # a damaged cache file is redrawn
            pass
    value = build()
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    torch.save(value, tmp)
    os.replace(tmp, path)  # atomic: parallel notebooks never read half a file
    return value


def _check_families(families) -> tuple[str, ...]:
    chosen = fonts(families)
    if not chosen:
        raise CvcourseError("no fonts chosen: pass at least one font family")
    return chosen


def glyph_dataset(
    n: int,
    chars: str = DIGITS + UPPERCASE,
    families: str | Sequence[str] | None = None,
    image_size: int = 64,
    scale: tuple[float, float] = (0.35, 0.85),
    max_rotation: float = 8.0,
    blur: tuple[float, float] = (0.0, 1.0),
    noise: tuple[float, float] = (0.0, 0.06),
    seed: int = 0,
    with_font: bool = False,
    progress: bool = True,
) -> TensorDataset:
    """``n`` photos of single characters, each at a random size, place and angle on a square canvas.

    Args:
        n: number of samples.
        chars: the classes; label ``k`` is ``chars[k]``.
        families: font families to draw fonts from (see :data:`FAMILIES`); all 22 fonts when ``None``.
        image_size: canvas side in pixels.
        scale: range of the font size in pixels as a fraction of ``image_size`` (glyphs that would not
            fit are rendered smaller).
        max_rotation: rotations are uniform in +-max_rotation degrees.
        blur: range of the Gaussian blur sigma in pixels.
        noise: range of the standard deviation of additive Gaussian noise.
        with_font: also return each sample's font id (an index into :data:`FONTS`).
        progress: show a progress bar while rendering (a cached set loads without one).
    Returns:
        ``TensorDataset(images (n, 1, S, S) float32 in [0, 1] with dark ink on light paper, labels (n,) long)``,
        with a third tensor ``font_ids (n,) long`` when ``with_font``.
    """
    chosen = _check_families(families)
    if not chars or len(set(chars)) != len(chars):
        raise CvcourseError(f"chars must be distinct characters, got {chars!r}")
    font_ids = [FONTS.index(font) for font in chosen]
    arguments = dict(n=n, chars=chars, fonts=list(chosen), image_size=image_size, scale=list(scale),
                     max_rotation=max_rotation, blur=list(blur), noise=list(noise), seed=seed)

    def build():
        ink = np.empty((n, 1, image_size, image_size), np.float32)
        labels, ids, photos = np.empty(n, np.int64), np.empty(n, np.int64), []
        for i in tqdm(range(n), desc="rendering glyphs", unit="glyph", leave=False, disable=not progress):
            rng = np.random.default_rng([seed, i])
            ink[i, 0], labels[i], ids[i] = _glyph_sample(rng, chars, font_ids, image_size, scale, max_rotation)
            photos.append(_Photo(rng, (image_size, image_size), blur, noise))
        return {"images": _develop(ink, photos), "labels": torch.from_numpy(labels), "fonts": torch.from_numpy(ids)}

    stored = _cached("glyphs", arguments, build)
    tensors = (_to_float(stored["images"]), stored["labels"]) + ((stored["fonts"],) if with_font else ())
    return TensorDataset(*tensors)


def _text_ink(text: str, font: str, pixels: int) -> np.ndarray:
    """Ink (h, w) of a line of text between the font's ascender and descender lines, cropped left and right.

    Keeping the vertical metrics keeps the baseline: an x-height "o" stays smaller and lower than a "0".
    Words are set one by one, so fonts without a space glyph still space them.
    """
    from PIL import Image, ImageDraw

    face = _font(font, pixels)
    space = face.getlength(" ") or 0.0
    if space < 0.2 * pixels:
        space = 0.3 * pixels
    words = text.split(" ")
    ascent, descent = face.getmetrics()
    widths = [face.getlength(word) for word in words]
    total = int(np.ceil(sum(widths) + space * (len(words) - 1))) + 2 * pixels
    canvas = Image.new("L", (total, ascent + descent), 0)
    draw, x = ImageDraw.Draw(canvas), float(pixels)
    for word, width in zip(words, widths):
        draw.text((x, 0), word, font=face, fill=255)
        x += width + space
    array = np.asarray(canvas, dtype=np.float32) / 255.0
    cols = np.nonzero(array.max(0))[0]
    if len(cols) == 0:
        return array[:, :1]
    return array[:, cols[0]:cols[-1] + 1]


class TextLines(Dataset):
    """Rendered text lines and their transcriptions.

    Attributes:
        images: (N, 1, H, W) float32 in [0, 1], dark ink on light paper.
        texts: N strings.
        font_ids: (N,) long, indices into :data:`FONTS`.
    Items are ``(image (1, H, W), text)``; a DataLoader batches them into a tensor and a list of strings.
    """

    def __init__(self, images: torch.Tensor, texts: Sequence[str], font_ids: torch.Tensor):
        if not len(images) == len(texts) == len(font_ids):
            raise CvcourseError("images, texts and font ids must have the same length")
        self.images, self.texts, self.font_ids = images, list(texts), font_ids

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, index: int):
        return self.images[index], self.texts[index]


def random_text(rng: np.random.Generator, alphabet: str, length: tuple[int, int], space_probability: float = 0.0) -> str:
    """A random string of ``length[0]..length[1]`` characters of ``alphabet``; inner characters become
    spaces with ``space_probability`` (never two in a row)."""
    size = int(rng.integers(length[0], length[1] + 1))
    chars = [alphabet[k] for k in rng.integers(len(alphabet), size=size)]
    for i in range(1, size - 1):
        if chars[i - 1] != " " and rng.random() < space_probability:
            chars[i] = " "
    return "".join(chars)


def text_lines(
    n: int,
    alphabet: str = DIGITS + LOWERCASE,
    length: tuple[int, int] = (3, 10),
    height: int = 32,
    width: int = 128,
    families: str | Sequence[str] | None = None,
    space_probability: float = 0.0,
    max_rotation: float = 2.0,
    blur: tuple[float, float] = (0.0, 0.8),
    noise: tuple[float, float] = (0.0, 0.06),
    seed: int = 0,
    progress: bool = True,
) -> TextLines:
    """``n`` lines of random text, each set in a random font at a random size, angle and place.

    Args:
        alphabet: the characters lines are drawn from (uniformly, so no word prior helps a reader).
        length: inclusive range of the number of characters per line.
        height, width: the image size; the text height is 55-85% of ``height`` unless the line is too
            long for ``width``, in which case it is set smaller.
        families: font families to draw fonts from; all 22 fonts when ``None``.
        space_probability: chance that an inner character is a space (a word break).
        max_rotation: rotations are uniform in +-max_rotation degrees.
        blur, noise: ranges of the Gaussian blur sigma and the noise standard deviation.
        progress: show a progress bar while rendering (a cached set loads without one).
    Returns:
        a :class:`TextLines` with images (n, 1, height, width), n strings and font ids.
    """
    chosen = _check_families(families)
    if " " in alphabet:
        raise CvcourseError("leave the space out of the alphabet; use space_probability for word breaks")
    font_ids = [FONTS.index(font) for font in chosen]
    arguments = dict(n=n, alphabet=alphabet, length=list(length), height=height, width=width, fonts=list(chosen),
                     space_probability=space_probability, max_rotation=max_rotation, blur=list(blur),
                     noise=list(noise), seed=seed)

    def build():
        canvas = np.zeros((n, 1, height, width), np.float32)
        texts, ids, photos = [], np.empty(n, np.int64), []
        for i in tqdm(range(n), desc="rendering lines", unit="line", leave=False, disable=not progress):
            rng = np.random.default_rng([seed, i])
            text = random_text(rng, alphabet, length, space_probability)
            font_id = int(font_ids[rng.integers(len(font_ids))])
            degrees = rng.uniform(-max_rotation, max_rotation)
            pixels = max(6, int(round(rng.uniform(0.55, 0.85) * height)))
            # Measure before rendering: shrink the type if the rotated line would not fit.
            face = _font(FONTS[font_id], pixels)
            box_h, box_w = sum(face.getmetrics()), face.getlength(text.replace(" ", "n"))
            turn = np.radians(abs(degrees))
            fit = min((height - 2) / (box_w * np.sin(turn) + box_h * np.cos(turn)),
                      (width - 2) / (box_w * np.cos(turn) + box_h * np.sin(turn)))
            if fit < 1.0:
                pixels = max(6, int(pixels * fit))
            line = _rotate(_text_ink(text, FONTS[font_id], pixels), degrees)
            while (line.shape[0] > height - 2 or line.shape[1] > width - 2) and pixels > 6:  # measured a bit small
                pixels -= 1
                line = _rotate(_text_ink(text, FONTS[font_id], pixels), degrees)
            line = line[:height - 2, :width - 2]  # only ever crops lines too long for the image at 6 px
            h, w = line.shape
            top = int(rng.integers(1, height - h)) if height - h > 1 else 0
            left = int(rng.integers(1, width - w)) if width - w > 1 else 0
            canvas[i, 0, top:top + h, left:left + w] = line
            photos.append(_Photo(rng, (height, width), blur, noise))
            texts.append(text)
            ids[i] = font_id
        return {"images": _develop(canvas, photos), "texts": texts, "fonts": torch.from_numpy(ids)}

    stored = _cached("lines", arguments, build)
    return TextLines(_to_float(stored["images"]), stored["texts"], stored["fonts"])
