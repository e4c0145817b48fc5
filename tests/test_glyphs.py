"""cvcourse.glyphs: characters and text lines rendered from matplotlib's fonts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cvcourse import glyphs
from cvcourse.errors import CvcourseError


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CVCOURSE_CACHE", str(tmp_path))


def test_22_text_fonts_in_five_disjoint_families_all_shipped_with_matplotlib():
    assert len(glyphs.FONTS) == 22 and len(set(glyphs.FONTS)) == 22
    assert len(glyphs.FAMILIES) == 5
    for font in glyphs.FONTS:
        assert (glyphs.font_dir() / font).is_file(), font
    assert sum(len(files) for files in glyphs.FAMILIES.values()) == 22
    assert glyphs.fonts("STIX") == glyphs.FAMILIES["STIX"]
    assert set(glyphs.fonts(["DejaVu Serif", "STIX"])) == set(glyphs.FAMILIES["DejaVu Serif"] + glyphs.FAMILIES["STIX"])
    assert glyphs.family_of("cmtt10.ttf") == "Computer Modern"


def test_unknown_family_is_one_line_listing_the_valid_ones():
    with pytest.raises(CvcourseError) as error:
        glyphs.fonts("Comic Sans")
    assert "\n" not in str(error.value) and all(family in str(error.value) for family in glyphs.FAMILIES)


@pytest.mark.parametrize("font", glyphs.FONTS)
def test_every_font_draws_the_shapes_of_letters(font):
    # Facts about letter shapes that any text font obeys, checked on the rendered ink.
    bar = glyphs.render_glyph("I", font, 48) > 0.5
    h = bar.shape[0]
    assert h > 25 and 0 < bar[h // 2].sum() < h / 3, "an I is tall with a narrow stem (even when slanted)"
    ring = glyphs.render_glyph("O", font, 48) > 0.5
    h, w = ring.shape
    assert not ring[h // 2, w // 2] and ring[h // 2].any(), "an O has a hole in the middle"
    assert ring[:, : w // 4].any() and ring[:, -(w // 4):].any()
    if font != "cmmi10.ttf":  # a math font: its "-" slot holds another symbol
        dash = glyphs.render_glyph("-", font, 48)
        assert dash.shape[1] > 1.5 * dash.shape[0], "a hyphen is wide and flat"
    assert not np.array_equal(glyphs.render_glyph("A", font, 32), glyphs.render_glyph("B", font, 32))


def test_rotation_turns_a_bar_counter_clockwise():
    bar = glyphs.render_glyph("-", "DejaVuSans.ttf", 64)
    turned = glyphs.render_glyph("-", "DejaVuSans.ttf", 64, degrees=90.0)
    assert turned.shape[0] > 1.5 * turned.shape[1]
    tilted = glyphs.render_glyph("-", "DejaVuSans.ttf", 64, degrees=20.0) > 0.5
    rows, cols = np.nonzero(tilted)
    # Counter-clockwise on screen: the right end of the bar rises, i.e. its row index falls.
    assert np.corrcoef(rows, cols)[0, 1] < -0.5
    assert bar.max() <= 1.0 and turned.min() >= 0.0


def test_glyph_dataset_shapes_ranges_and_classes():
    data = glyphs.glyph_dataset(60, chars="0123", image_size=32, seed=3, with_font=True)
    images, labels, font_ids = data.tensors
    assert images.shape == (60, 1, 32, 32) and images.dtype == torch.float32
    assert 0.0 <= images.min() and images.max() <= 1.0
    assert labels.dtype == torch.long and set(labels.tolist()) <= {0, 1, 2, 3} and len(set(labels.tolist())) == 4
    assert set(font_ids.tolist()) <= set(range(22))
    # Dark ink on light paper: the median pixel is paper, the darkest are clearly darker.
    flat = images.flatten(1)
    assert (flat.median(1).values - flat.min(1).values > 0.3).all()


def test_glyph_dataset_is_seeded_and_sample_i_does_not_depend_on_n():
    a = glyphs.glyph_dataset(8, image_size=32, seed=5)
    b = glyphs.glyph_dataset(20, image_size=32, seed=5)
    c = glyphs.glyph_dataset(8, image_size=32, seed=6)
    assert torch.equal(a.tensors[0], b.tensors[0][:8]) and torch.equal(a.tensors[1], b.tensors[1][:8])
    assert not torch.equal(a.tensors[0], c.tensors[0])


def test_a_held_out_family_never_appears_in_the_others():
    others = [f for f in glyphs.FAMILIES if f != "STIX"]
    _, _, seen = glyphs.glyph_dataset(200, image_size=32, families=others, with_font=True).tensors
    _, _, held = glyphs.glyph_dataset(50, image_size=32, families="STIX", with_font=True, seed=1).tensors
    stix = {glyphs.FONTS.index(f) for f in glyphs.FAMILIES["STIX"]}
    assert not set(seen.tolist()) & stix and set(held.tolist()) <= stix
    assert len(set(seen.tolist())) > 10


def test_photos_are_on_an_8_bit_scale():
    images = glyphs.glyph_dataset(5, image_size=24, seed=1).tensors[0]
    lines = glyphs.text_lines(3, height=16, width=48, seed=1).images
    for x in (images, lines):
        assert x.dtype == torch.float32 and ((x * 255) - (x * 255).round()).abs().max() < 1e-3


def test_rendered_sets_are_cached_and_reloaded_identically(tmp_path):
    first = glyphs.glyph_dataset(10, image_size=32, seed=9)
    files = list((tmp_path / "glyphs").glob("glyphs-*.pt"))
    assert len(files) == 1
    second = glyphs.glyph_dataset(10, image_size=32, seed=9)
    assert torch.equal(first.tensors[0], second.tensors[0])
    glyphs.glyph_dataset(11, image_size=32, seed=9)
    assert len(list((tmp_path / "glyphs").glob("glyphs-*.pt"))) == 2, "other arguments, other file"


def test_clean_glyph_is_the_rendered_glyph_on_paper():
    # No blur, no noise, no rotation: the image is paper minus a contrast times the font's own ink.
    data = glyphs.glyph_dataset(4, chars="H", families="DejaVu Sans", image_size=48, max_rotation=0.0,
                                blur=(0.0, 0.0), noise=(0.0, 0.0), with_font=True)
    for image, font_id in zip(data.tensors[0], data.tensors[2]):
        image = image[0].numpy()
        paper, darkest = image.max(), image.min()
        ink = (paper - image) / (paper - darkest)
        rows, cols = np.nonzero(ink.max(1) > 0)[0], np.nonzero(ink.max(0) > 0)[0]
        crop = ink[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
        # Find the font size that gives this crop's height and compare with PIL's rendering at that size.
        matches = [np.abs(glyphs.render_glyph("H", glyphs.FONTS[font_id], px) / glyphs.render_glyph(
            "H", glyphs.FONTS[font_id], px).max() - crop).max()
            for px in range(8, 48) if glyphs.render_glyph("H", glyphs.FONTS[font_id], px).shape == crop.shape]
        assert matches and min(matches) < 0.01  # the photos are stored with 8 bits


@pytest.mark.parametrize("sigma", [0.6, 1.0, 2.0])
def test_batched_blur_equals_scipy_gaussian_filter(sigma):
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(0)
    ink = np.zeros((3, 1, 24, 20), np.float32)
    ink[:, :, 6:18, 5:15] = rng.random((3, 1, 12, 10))
    blurred = glyphs._gaussian_blur(torch.from_numpy(ink), torch.full((3,), sigma)).numpy()
    for k in range(3):
        expected = gaussian_filter(ink[k, 0].astype(np.float64), sigma, mode="constant", truncate=3.0)
        assert np.abs(blurred[k, 0] - expected).max() < 1e-5  # same truncation: 3 sigma, rounded up


def test_batched_blur_uses_each_images_own_sigma():
    ink = torch.zeros(2, 1, 15, 15)
    ink[:, :, 7, 7] = 1.0
    out = glyphs._gaussian_blur(ink, torch.tensor([0.0, 1.5]))
    assert torch.equal(out[0], ink[0]), "sigma 0 leaves an image unchanged"
    assert torch.isclose(out[1].sum(), torch.tensor(1.0)) and out[1, 0, 7, 7] < 0.2


def test_text_lines_shapes_texts_and_determinism():
    lines = glyphs.text_lines(40, alphabet="abc123", length=(2, 6), height=24, width=96, space_probability=0.3, seed=2)
    assert lines.images.shape == (40, 1, 24, 96) and len(lines.texts) == 40 and len(lines) == 40
    assert 0.0 <= lines.images.min() and lines.images.max() <= 1.0
    for text in lines.texts:
        assert 2 <= len(text) <= 6 and set(text) <= set("abc123 ")
        assert not text.startswith(" ") and not text.endswith(" ") and "  " not in text
    assert any(" " in text for text in lines.texts)
    image, text = lines[3]
    assert image.shape == (1, 24, 96) and text == lines.texts[3]
    again = glyphs.text_lines(40, alphabet="abc123", length=(2, 6), height=24, width=96, space_probability=0.3, seed=2)
    assert torch.equal(lines.images, again.images) and lines.texts == again.texts


def test_longer_texts_cover_more_columns():
    # Independent of how lines are drawn: more characters at a similar size need more width.
    lines = glyphs.text_lines(120, length=(1, 12), height=32, width=256, blur=(0.0, 0.0), noise=(0.0, 0.0), seed=4)
    widths = []
    for image in lines.images[:, 0]:
        ink = image.max() - image > 0.3
        cols = torch.nonzero(ink.any(0)).flatten()
        widths.append(int(cols[-1] - cols[0] + 1))
    assert np.corrcoef([len(t) for t in lines.texts], widths)[0, 1] > 0.7


def test_lines_are_not_rescaled_to_their_content_so_an_o_stays_smaller_than_a_zero():
    # The type size is drawn per line and never stretched to fill the image: case and x-height survive.
    kwargs = dict(families="DejaVu Sans", height=32, width=64, max_rotation=0.0, blur=(0.0, 0.0),
                  noise=(0.0, 0.0), length=(1, 1))
    lines = glyphs.text_lines(300, alphabet="o0", **kwargs)
    heights = {"o": [], "0": []}
    for image, text in zip(lines.images[:, 0], lines.texts):
        rows = torch.nonzero((image.max() - image > 0.3).any(1)).flatten()
        heights[text].append(int(rows[-1] - rows[0] + 1) / 32)
    assert heights["o"] and heights["0"]
    assert np.mean(heights["0"]) > 1.2 * np.mean(heights["o"])


def test_text_lines_reject_a_space_in_the_alphabet_and_an_empty_font_choice():
    with pytest.raises(CvcourseError):
        glyphs.text_lines(2, alphabet="ab ")
    with pytest.raises(CvcourseError):
        glyphs.glyph_dataset(2, families=[])
