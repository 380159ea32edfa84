"""Person-centred RGB crops (OpenGait's pretreatment_rgb rule) on small synthetic frames."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.perception.crops import (
    boxes_from_masks,
    export_rgb_pkls,
    pad_resize,
    pad_resize_sequence,
    person_crops,
    to_channels_first,
)

try:  # the project's restricted unpickler when present; plain pickle otherwise (our own files)
    from pipeline.io.safe_pickle import load_array
except ImportError:  # pragma: no cover - only while that module is being written
    import pickle

    def load_array(path):
        with open(path, "rb") as handle:
            return pickle.load(handle)


def coloured(height: int, width: int) -> np.ndarray:
    """An image whose pixel (r, c) = (r, c, 7): positions survive a resize that does not scale."""
    rows, cols = np.mgrid[0:height, 0:width]
    return np.stack([rows, cols, np.full_like(rows, 7)], axis=-1).astype(np.uint8)


def test_tall_image_is_padded_and_centred():
    # already at the target height: width stays 2, offset (4 - 2) // 2 = 1
    out = pad_resize(coloured(8, 2), (8, 4))
    assert out.shape == (8, 4, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[:, 1:3], coloured(8, 2))
    assert out[:, [0, 3]].max() == 0


def test_wide_image_is_centre_cropped_like_upstream():
    # width 7 > 4: offset (4 - 7) // 2 = -2 → abs 2 → keeps columns 2..5 (the left loses one more)
    out = pad_resize(coloured(8, 7), (8, 4))
    np.testing.assert_array_equal(out, coloured(8, 7)[:, 2:6])


def test_height_is_rescaled_with_int_width():
    # 16×6 → height 8, width int(6 * 8 / 16) = 3, centred with offset 0 in 4 columns
    out = pad_resize(np.full((16, 6, 3), 200, np.uint8), (8, 4))
    np.testing.assert_array_equal(out[:, :3], 200)
    assert out[:, 3].max() == 0


def test_contain_never_crops():
    out = pad_resize(np.full((8, 16, 3), 90, np.uint8), (8, 4), fit="contain")
    # scale min(8/8, 4/16) = 1/4 → 2×4, centred vertically at rows 3..4
    np.testing.assert_array_equal(out[3:5], 90)
    assert out[:3].max() == 0 and out[5:].max() == 0


def test_pad_resize_sequence_ratios():
    images, ratios = pad_resize_sequence([coloured(8, 2), coloured(16, 6)], (8, 4))
    assert images.shape == (2, 8, 4, 3)
    np.testing.assert_allclose(ratios, [2 / 8, 6 / 16])


def test_person_crops_from_masks_box_and_missing_frame():
    frames = np.zeros((3, 40, 30, 3), np.uint8)
    masks = np.zeros((3, 40, 30), bool)
    frames[0, 10:18, 20:22] = coloured(8, 2)  # person box rows 10..17, cols 20..21
    masks[0, 10:18, 20:22] = True
    frames[2, 0:8, 0:4] = 99
    masks[2, 0:8, 0:4] = True
    crops = person_crops(frames, masks, size=(8, 4))
    assert crops.images.shape == (3, 8, 4, 3)
    np.testing.assert_array_equal(crops.images[0, :, 1:3], coloured(8, 2))  # person centred
    np.testing.assert_array_equal(crops.valid, [True, False, True])
    assert crops.images[1].max() == 0 and np.isnan(crops.ratios[1])
    np.testing.assert_allclose(crops.ratios[[0, 2]], [2 / 8, 4 / 8])
    np.testing.assert_array_equal(crops.images[2], 99)


def test_person_crops_from_boxes_with_margin_outside_the_frame():
    frames = np.full((2, 20, 20, 3), 50, np.uint8)
    boxes = np.array([[0, 0, 5, 10], [np.nan, np.nan, np.nan, np.nan]])
    crops = person_crops(frames, boxes, size=(20, 10), margin=0.5)
    # box grown by 5 px per side → x -5..10, y -5..15 (20 rows × 15 cols, ratio 0.75); the part
    # outside the frame is black, so the person stays centred instead of being shifted
    assert crops.ratios[0] == pytest.approx(15 / 20)
    assert crops.valid.tolist() == [True, False]
    # 15 columns into 10: centre crop from column abs((10 - 15) // 2) = 3, i.e. x -2..7
    first = crops.images[0]
    assert first[:5].max() == 0  # rows above the frame
    assert first[5:, :2].max() == 0 and first[5:, 2:].min() == 50  # left of the frame / inside it


def test_default_size_is_biggait_input():
    frames = np.zeros((1, 600, 300, 3), np.uint8)
    masks = np.zeros((1, 600, 300), bool)
    masks[0, 100:548, 50:150] = True  # exactly 448 rows: no rescale, 100 columns → offset 62
    frames[0][masks[0]] = 200
    crops = person_crops(frames, masks)
    assert crops.images.shape == (1, 448, 224, 3)
    assert crops.images[0, :, 62:162].min() == 200 and crops.images[0, :, :62].max() == 0


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="frames"):
        person_crops(np.zeros((2, 4, 4)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="masks"):
        person_crops(np.zeros((2, 4, 4, 3)), np.zeros((2, 5, 4)))


def test_boxes_from_masks():
    masks = np.zeros((2, 10, 10), bool)
    masks[0, 2:5, 3:9] = True
    boxes = boxes_from_masks(masks)
    np.testing.assert_array_equal(boxes[0], [3, 2, 9, 5])
    assert np.isnan(boxes[1]).all()


def test_export_rgb_pkls_layout(tmp_path):
    images, ratios = pad_resize_sequence([coloured(8, 2), coloured(8, 3)], (8, 4))
    rgb_path, ratio_path = export_rgb_pkls(images, ratios, tmp_path, "0007", "NM1", "90_3")
    assert rgb_path == tmp_path / "0007" / "NM1" / "90_3" / "90_3-aligned-rgbs.pkl"
    assert sorted(p.name for p in rgb_path.parent.iterdir()) == [rgb_path.name, ratio_path.name]
    np.testing.assert_array_equal(load_array(rgb_path), to_channels_first(images))
    assert load_array(rgb_path).shape == (2, 3, 8, 4)
    np.testing.assert_allclose(load_array(ratio_path), ratios)
    with pytest.raises(ValueError, match="NaN"):
        export_rgb_pkls(images, np.array([0.5, np.nan]), tmp_path, "1", "NM1", "0")
