"""CLEAR-MOT evaluation: hand-worked sequences, and agreement with the motmetrics package on random ones.

motmetrics 1.4.0's own ``iou_matrix`` calls ``np.asfarray``, which NumPy 2 removed; its accumulator and
metrics work, so it is given the distances ``1 - IoU`` (from torchvision's ``box_iou``) directly.
"""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import motmetrics as mm  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torchvision.ops import box_iou as tv_box_iou  # noqa: E402

from cvcourse.mot import MOTResult, box_iou, clear_mot, draw_tracking, ground_truth  # noqa: E402
from cvcourse.videos import moving_objects  # noqa: E402


def square(x, y, side=10.0):
    return [x, y, x + side, y + side]


def test_box_iou_equals_torchvision():
    gen = torch.Generator().manual_seed(0)
    corners = torch.rand(7, 2, generator=gen) * 50
    a = torch.cat([corners, corners + 1 + torch.rand(7, 2, generator=gen) * 20], 1)
    corners = torch.rand(5, 2, generator=gen) * 50
    b = torch.cat([corners, corners + 1 + torch.rand(5, 2, generator=gen) * 20], 1)
    np.testing.assert_allclose(box_iou(a, b), tv_box_iou(a.double(), b.double()).numpy(), atol=1e-12)
    assert box_iou(np.zeros((0, 4)), b).shape == (0, 5)
    # hand-worked: two 10x10 squares shifted by 5 px share 50 of 150 px
    assert box_iou([square(0, 0)], [square(5, 0)])[0, 0] == pytest.approx(50 / 150)


def test_perfect_tracker():
    gt = [torch.tensor([square(0, 0), square(30, 30)]) for _ in range(5)]
    ids = [torch.tensor([0, 1])] * 5
    result = clear_mot(gt, ids, gt, [torch.tensor([7, 3])] * 5)
    assert (result.mota, result.switches, result.misses, result.false_positives) == (1.0, 0, 0, 0)
    assert result.matches == result.objects == 10 and result.motp == pytest.approx(1.0)


def test_hand_worked_sequence():
    """Two objects over four frames.

    frame 0: both tracked (hyp 1 -> obj 0, hyp 2 -> obj 1)                     0 errors
    frame 1: obj 1's track is lost, a false box far away (hyp 9)              1 miss, 1 FP
    frame 2: obj 1 picked up by a new track 3                                  1 switch
    frame 3: the tracks of the two objects trade ids (hyp 3 on obj 0, 1 on 1)  2 switches
    MOTA = 1 - (1 + 1 + 3) / 8 = 0.375.
    """
    truth = [torch.tensor([square(0, 0), square(40, 40)])] * 4
    oids = [torch.tensor([0, 1])] * 4
    hyps = [
        torch.tensor([square(1, 0), square(40, 41)]),
        torch.tensor([square(1, 0), square(80, 80)]),
        torch.tensor([square(1, 0), square(41, 40)]),
        torch.tensor([square(1, 0), square(41, 40)]),
    ]
    hids = [torch.tensor([1, 2]), torch.tensor([1, 9]), torch.tensor([1, 3]), torch.tensor([3, 1])]
    result = clear_mot(truth, oids, hyps, hids)
    assert (result.objects, result.misses, result.false_positives, result.switches) == (8, 1, 1, 3)
    assert result.matches == 7
    assert result.mota == pytest.approx(0.375)
    assert result.switch_events == [(2, 1, 2, 3), (3, 0, 1, 3), (3, 1, 3, 1)]
    assert result.matched[1] == {0: 1} and result.matched[3] == {0: 3, 1: 1}
    assert result.motp == pytest.approx(90 / 110)  # every match is shifted by 1 px


def test_kept_correspondence_beats_a_better_overlap():
    """Object 0 was on hyp 1; now hyp 2 overlaps it better but hyp 1 still has IoU >= 0.5: no switch."""
    truth = [torch.tensor([square(0, 0)])] * 2
    oids = [torch.tensor([0])] * 2
    hyps = [torch.tensor([square(0, 0)]), torch.tensor([square(2, 0), square(0, 0)])]  # IoU 80/120 and 1
    result = clear_mot(truth, oids, hyps, [torch.tensor([1]), torch.tensor([1, 2])])
    assert (result.switches, result.false_positives, result.misses) == (0, 1, 0)
    assert result.matched[1] == {0: 1}


def test_switch_is_counted_after_a_gap_and_threshold_is_inclusive():
    """Object 0 tracked by hyp 1, hidden for a frame, back on hyp 5: one switch. IoU of exactly 0.5 matches."""
    truth = [torch.tensor([square(0, 0)]), torch.zeros(0, 4), torch.tensor([square(0, 0)])]
    oids = [torch.tensor([0]), torch.zeros(0, dtype=torch.long), torch.tensor([0])]
    half = [0.0, 0.0, 10.0, 5.0]  # inside the square, half its area: IoU 0.5
    hyps = [torch.tensor([half]), torch.zeros(0, 4), torch.tensor([square(0, 0)])]
    hids = [torch.tensor([1]), torch.zeros(0, dtype=torch.long), torch.tensor([5])]
    result = clear_mot(truth, oids, hyps, hids)
    assert (result.objects, result.matches, result.switches, result.misses) == (2, 2, 1, 0)
    below = [torch.tensor([[0.0, 0.0, 10.0, 4.9]]), torch.zeros(0, 4), torch.tensor([square(0, 0)])]
    result = clear_mot(truth, oids, below, hids)
    assert (result.matches, result.misses, result.false_positives, result.switches) == (1, 1, 1, 0)


def random_sequence(seed, n_frames=40, n_objects=5):
    """Ground truth of drifting boxes and a sloppy tracker: jitter, dropouts, id changes, swaps, false boxes."""
    rng = np.random.default_rng(seed)
    pos = rng.uniform(0, 60, size=(n_objects, 2))
    vel = rng.normal(0, 1.5, size=(n_objects, 2))
    track_of = np.arange(n_objects) + 100
    next_id = 200
    gt_b, gt_i, hy_b, hy_i = [], [], [], []
    for _ in range(n_frames):
        pos = pos + vel
        present = rng.random(n_objects) > 0.1
        boxes = np.concatenate([pos, pos + 8], 1)[present]
        gt_b.append(torch.tensor(boxes))
        gt_i.append(torch.tensor(np.arange(n_objects)[present]))
        if rng.random() < 0.1:  # a track changes id
            k = rng.integers(n_objects)
            track_of[k], next_id = next_id, next_id + 1
        if rng.random() < 0.1:  # two tracks swap objects
            a, b = rng.choice(n_objects, 2, replace=False)
            track_of[[a, b]] = track_of[[b, a]]
        keep = present & (rng.random(n_objects) > 0.15)
        h = np.concatenate([pos, pos + 8], 1)[keep] + rng.normal(0, 1.6, size=(int(keep.sum()), 4))
        ids = track_of[keep]
        n_false = rng.poisson(0.5)
        corner = rng.uniform(0, 60, size=(n_false, 2))
        h = np.concatenate([h, np.concatenate([corner, corner + 8], 1)])
        ids = np.concatenate([ids, np.arange(n_false) + 1000 + 10 * len(hy_i)])
        hy_b.append(torch.tensor(h))
        hy_i.append(torch.tensor(ids))
    return gt_b, gt_i, hy_b, hy_i


@pytest.mark.parametrize("seed", range(6))
def test_equals_motmetrics_on_random_sequences(seed):
    gt_b, gt_i, hy_b, hy_i = random_sequence(seed)
    accumulator = mm.MOTAccumulator(auto_id=True)
    for g, gi, h, hi in zip(gt_b, gt_i, hy_b, hy_i):
        distance = 1.0 - tv_box_iou(g.double(), h.double()).numpy()
        distance[distance > 0.5] = np.nan  # motmetrics' own convention: NaN = may not match
        accumulator.update(gi.tolist(), hi.tolist(), distance)
    metrics = ["mota", "motp", "num_switches", "num_false_positives", "num_misses", "num_objects", "num_matches"]
    reference = mm.metrics.create().compute(accumulator, metrics=metrics, name="x").iloc[0]
    result = clear_mot(gt_b, gt_i, hy_b, hy_i, iou_threshold=0.5)
    assert result.switches == reference["num_switches"] > 0
    assert result.false_positives == reference["num_false_positives"]
    assert result.misses == reference["num_misses"]
    assert result.objects == reference["num_objects"]
    # motmetrics counts matches and switches apart; ours include the switches
    assert result.matches == reference["num_matches"] + reference["num_switches"]
    assert result.mota == pytest.approx(reference["mota"])
    assert 1 - result.motp == pytest.approx(reference["motp"])


def test_results_add_up_over_videos():
    parts = [clear_mot(*random_sequence(seed, n_frames=15)) for seed in range(3)]
    total = sum(parts)
    assert isinstance(total, MOTResult)
    assert total.objects == sum(p.objects for p in parts) and total.switches == sum(p.switches for p in parts)
    errors = sum(p.misses + p.false_positives + p.switches for p in parts)
    assert total.mota == pytest.approx(1 - errors / total.objects)
    assert np.isnan(MOTResult().mota)


def test_ground_truth_keeps_visible_objects_only():
    video = moving_objects(n_frames=25, size=64, n_objects=3, n_occluders=2, seed=3)
    boxes, ids = ground_truth(video)
    assert len(boxes) == 25
    for t in range(25):
        expected = torch.nonzero(video.visibility[t] >= 0.5).flatten()
        assert ids[t].tolist() == expected.tolist()
        assert torch.equal(boxes[t], video.boxes[t, expected])
    assert sum(len(i) for i in ids) < 75  # the bars hide someone at some point


def test_draw_tracking_draws_every_box():
    video = moving_objects(n_frames=2, size=48, n_objects=2, seed=0)
    fig, ax = plt.subplots()
    draw_tracking(ax, video.frames[0], detections=video.boxes[0], tracks=video.boxes[0],
                  track_ids=torch.tensor([4, 7]), truth=video.boxes[0], truth_ids=video.ids, title="t = 0")
    assert len(ax.patches) == 6 and ax.get_title() == "t = 0"
    assert {t.get_text() for t in ax.texts} == {"4", "7", "gt 0", "gt 1"}
    plt.close(fig)
