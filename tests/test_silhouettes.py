"""OpenGait silhouette pretreatment on tiny synthetic masks with hand-computed results.

Bodies that are exactly 64 rows tall make the INTER_CUBIC resize an identity (same size), so every
expected array below follows from the rules alone: crop rows, median column, 64-wide window, pad-32.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from pipeline.contracts import pack_masks, read_frame_store, write_frame_store
from pipeline.perception.silhouettes import (
    DROP_NO_CENTRE,
    DROP_TOO_FEW_PIXELS,
    align_sequence,
    align_silhouette,
    cut_to_44,
    export_opengait_pkl,
    opengait_pkl_path,
    pretreat_from_store,
    pretreat_packed_masks,
    pretreat_silhouettes,
)

try:  # the project's restricted unpickler, when present; plain pickle otherwise (our own files)
    from pipeline.io.safe_pickle import load_array
except ImportError:  # pragma: no cover - only while that module is being written

    def load_array(path):
        with open(path, "rb") as handle:
            return pickle.load(handle)


def rectangle(height: int = 100, width: int = 120, rows=(20, 84), cols=(50, 70)) -> np.ndarray:
    """A bool mask with one filled rectangle rows[0]:rows[1], cols[0]:cols[1]."""
    mask = np.zeros((height, width), dtype=bool)
    mask[rows[0] : rows[1], cols[0] : cols[1]] = True
    return mask


def expected_band(first: int, stop: int) -> np.ndarray:
    out = np.zeros((64, 64), dtype=np.uint8)
    out[:, first:stop] = 255
    return out


def test_centred_rectangle_known_crop_and_centre():
    # 64 rows → no rescale; 20 columns 50..69 → the median column is 60 (50..59 hold exactly half, so
    # the cumulative sum first *exceeds* half at 60); window [28, 92) → the body lands at 22..41.
    aligned, reason = align_silhouette(rectangle())
    assert reason is None
    np.testing.assert_array_equal(aligned, expected_band(22, 42))


@pytest.mark.parametrize("cols", [(5, 25), (100, 120)])
def test_pad_branch_near_either_border(cols):
    # left = 15 - 32 < 0, resp. right = 110 + 32 >= 120: 32 zero columns are added on both sides and
    # the window shifts by 32, which keeps the body at the same place in the output.
    aligned, _ = align_silhouette(rectangle(cols=cols))
    np.testing.assert_array_equal(aligned, expected_band(22, 42))


def test_pad_branch_when_left_is_exactly_zero():
    # median column 32 → left == 0, which upstream still treats as "outside" (<=): same pixels as [0, 64)
    aligned, _ = align_silhouette(rectangle(cols=(22, 42)))
    np.testing.assert_array_equal(aligned, expected_band(22, 42))


def test_rows_are_cropped_and_height_rescaled_with_full_width():
    # 128 rows tall, frame 100 wide: scale 1/2 and the width becomes int(64 * 100/128) = 50; the crop
    # keeps the frame's full width (columns are never cropped before the resize).
    mask = rectangle(height=200, width=100, rows=(40, 168), cols=(40, 60))
    aligned, _ = align_silhouette(mask)
    assert aligned.shape == (64, 64) and aligned.dtype == np.uint8
    assert (aligned[0] > 0).any() and (aligned[-1] > 0).any()  # top and bottom rows touch the body
    body_columns = np.flatnonzero(aligned[32] > 127)
    assert 9 <= len(body_columns) <= 11  # 20 px wide at half scale
    # the body is centred on the median column → columns ~27..37 of the 64-wide window
    assert abs(body_columns.mean() - 32) <= 1.0


def test_small_frames_are_dropped_at_the_10000_threshold():
    mask = np.zeros((50, 50), dtype=bool)
    mask[10:49, 20] = True  # 39 pixels × 255 = 9945 <= 10000 → dropped
    assert align_silhouette(mask) == (None, DROP_TOO_FEW_PIXELS)
    mask[9, 20] = True  # 40 pixels × 255 = 10200 > 10000 → kept
    aligned, reason = align_silhouette(mask)
    assert reason is None and aligned is not None


def test_median_column_zero_is_dropped_like_upstream():
    # A body in column 0 only: x-centre 0, which upstream's ``if not x_center`` rejects.
    mask = np.zeros((80, 40), dtype=bool)
    mask[5:69, 0] = True
    assert align_silhouette(mask) == (None, DROP_NO_CENTRE)


def test_sequence_keeps_indices_and_reasons():
    empty = np.zeros((100, 120), dtype=bool)
    masks = np.stack([rectangle(), empty, rectangle(cols=(5, 25)), empty])
    sils, kept = pretreat_silhouettes(masks)
    assert sils.shape == (2, 64, 64) and sils.dtype == np.uint8
    np.testing.assert_array_equal(kept, [0, 2])
    result = align_sequence(masks)
    assert result.dropped == {1: DROP_TOO_FEW_PIXELS, 3: DROP_TOO_FEW_PIXELS}


def test_uint8_0_255_input_equals_bool_input():
    mask = rectangle()
    a, _ = align_silhouette(mask)
    b, _ = align_silhouette(mask.astype(np.uint8) * 255)
    np.testing.assert_array_equal(a, b)


def test_float_masks_are_refused():
    with pytest.raises(ValueError, match="bool or integer"):
        align_silhouette(rectangle().astype(np.float32))


def test_all_dropped_gives_empty_arrays():
    sils, kept = pretreat_silhouettes(np.zeros((3, 20, 20), dtype=bool))
    assert sils.shape == (0, 64, 64) and kept.shape == (0,)


def test_cut_to_44_drops_ten_columns_each_side_and_scales():
    sils = np.zeros((2, 64, 64), dtype=np.uint8)
    sils[:, :, 9] = 255  # removed
    sils[:, :, 10] = 255  # becomes column 0
    sils[:, :, 53] = 51  # becomes column 43 = 0.2
    sils[:, :, 54] = 255  # removed
    cut = cut_to_44(sils)
    assert cut.shape == (2, 64, 44) and cut.dtype == np.float32
    np.testing.assert_array_equal(cut[0, 0, :2], [1.0, 0.0])
    assert cut[0, 0, 43] == np.float32(0.2)
    assert cut.sum() == pytest.approx(2 * 64 * 1.2)


def test_cut_scales_with_width_and_skips_narrow_inputs():
    assert cut_to_44(np.zeros((1, 128, 128), dtype=np.uint8)).shape == (1, 128, 88)
    assert cut_to_44(np.zeros((1, 64, 44), dtype=np.uint8)).shape == (1, 64, 44)  # int(44 // 64) = 0


def test_export_layout_and_round_trip(tmp_path):
    sils, _ = pretreat_silhouettes(np.stack([rectangle(), rectangle(cols=(30, 50))]))
    path = export_opengait_pkl(sils, tmp_path, "0001", "00-nm", "000")
    assert path == tmp_path / "0001" / "00-nm" / "000" / "000.pkl"
    assert path == opengait_pkl_path(tmp_path, "0001", "00-nm", "000")
    loaded = load_array(path)
    assert loaded.dtype == np.uint8 and loaded.shape == (2, 64, 64)
    np.testing.assert_array_equal(loaded, sils)
    assert [p.name for p in path.parent.iterdir()] == ["000.pkl"]  # no temp file left behind


def test_export_refuses_empty_and_bad_components(tmp_path):
    with pytest.raises(ValueError, match="no frames"):
        export_opengait_pkl(np.zeros((0, 64, 64), np.uint8), tmp_path, "1", "nm", "000")
    with pytest.raises(ValueError, match="subject"):
        export_opengait_pkl(np.zeros((1, 64, 64), np.uint8), tmp_path, "../x", "nm", "000")


def test_packed_masks_and_frame_store(tmp_path):
    masks = np.stack([rectangle(width=123), rectangle(width=123, cols=(5, 25))])
    direct = align_sequence(masks)
    packed = pretreat_packed_masks(pack_masks(masks), 123)
    np.testing.assert_array_equal(packed.sils, direct.sils)
    store_path = write_frame_store(tmp_path / "shard-0000.npz", {"s/c/v": {"mask": pack_masks(masks)}})
    from_store = pretreat_from_store(read_frame_store(store_path), "s/c/v", 123)
    np.testing.assert_array_equal(from_store.sils, direct.sils)
    np.testing.assert_array_equal(from_store.kept, [0, 1])
