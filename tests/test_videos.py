"""The synthetic videos: boxes match what is drawn, occlusion is where the bars are, detections are honest."""

import numpy as np
import pytest
import torch

from cvcourse.videos import PALETTE, crop, detections, moving_objects


@pytest.fixture(scope="module")
def video():
    return moving_objects(n_frames=30, size=64, n_objects=3, n_distractors=1, n_occluders=2, seed=7)


def test_shapes_and_ranges(video):
    assert video.frames.shape == (30, 3, 64, 64)
    assert video.boxes.shape == (30, 4, 4) and video.visibility.shape == (30, 4)
    assert 0 <= video.frames.min() and video.frames.max() <= 1
    assert video.distractor.tolist() == [False, False, False, True]


def test_same_seed_same_video_other_seed_other_video(video):
    again = moving_objects(n_frames=30, size=64, n_objects=3, n_distractors=1, n_occluders=2, seed=7)
    other = moving_objects(n_frames=30, size=64, n_objects=3, n_distractors=1, n_occluders=2, seed=8)
    assert torch.equal(video.frames, again.frames) and torch.equal(video.boxes, again.boxes)
    assert not torch.equal(video.boxes, other.boxes)


def test_box_encloses_the_pixels_of_its_colour_when_fully_visible():
    video = moving_objects(n_frames=20, size=64, n_objects=3, seed=1)
    colours = torch.tensor(PALETTE, dtype=torch.float32)
    checked = 0
    for t in range(len(video)):
        for i in range(3):
            if video.visibility[t, i] < 1:
                continue
            x1, y1, x2, y2 = video.boxes[t, i].tolist()
            # pixels whose colour is closest to one of the palette's colours and far from grey
            pixel = video.frames[t].permute(1, 2, 0)
            distance = (pixel[..., None, :] - colours).norm(dim=-1).min(dim=-1)
            nearest = distance.indices
            own = nearest[int((y1 + y2) / 2), int((x1 + x2) / 2)]
            ys, xs = torch.nonzero((nearest == own) & (distance.values < 0.15), as_tuple=True)
            inside = (xs + 0.5 >= x1 - 1) & (xs + 0.5 <= x2 + 1) & (ys + 0.5 >= y1 - 1) & (ys + 0.5 <= y2 + 1)
            assert inside.float().mean() > 0.9  # its colour lies inside its box (others may share a hue rarely)
            checked += 1
    assert checked > 20


def test_objects_behind_a_bar_are_not_visible(video):
    for t in range(len(video)):
        for i in range(4):
            x1, y1, x2, y2 = video.boxes[t, i].tolist()
            for bx1, by1, bx2, by2 in video.occluders.tolist():
                if bx1 <= x1 and x2 <= bx2 and by1 <= y1 and y2 <= by2:
                    assert video.visibility[t, i] == 0
    assert (video.visibility == 0).any() and (video.visibility == 1).any()


def test_detections_come_from_visible_objects_with_jitter(video):
    boxes, truth = detections(video, jitter=0.5, miss_rate=0.0, false_alarms=0.0, seed=0)
    for t in range(len(video)):
        assert sorted(truth[t].tolist()) == torch.nonzero(video.visibility[t] >= 0.5).flatten().tolist()
        error = boxes[t] - video.boxes[t, truth[t]]
        assert error.abs().max() < 3
    noisy, noisy_truth = detections(video, jitter=0.5, miss_rate=0.5, false_alarms=2.0, seed=0)
    false = sum(int((ids == -1).sum()) for ids in noisy_truth)
    found = sum(int((ids >= 0).sum()) for ids in noisy_truth)
    assert 30 < false < 90 and found < sum(len(ids) for ids in truth)


def test_crop_equals_slicing_at_whole_pixels():
    frame = torch.rand(3, 20, 30, generator=torch.Generator().manual_seed(0))
    window = crop(frame, centre=(12.0, 9.0), side=8, out_size=8)
    torch.testing.assert_close(window, frame[:, 5:13, 8:16])
    outside = crop(frame, centre=(0.0, 0.0), side=4, out_size=4)
    torch.testing.assert_close(outside[:, :2, :2], frame.mean(dim=(1, 2))[:, None, None].expand(3, 2, 2))
    np.testing.assert_allclose(outside[:, 2:, 2:].numpy(), frame[:, :2, :2].numpy(), rtol=1e-5, atol=1e-6)
