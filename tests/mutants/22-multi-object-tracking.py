"""Mistakes learners make when writing SORT's Kalman filter and association (notebook 22-multi-object-tracking)."""

MUTANTS = [
    # kalman_predict
    dict(cell="kalman_predict", test="test_kalman_predict", why="forgets the process noise Q",
         replace=[("cov = F @ cov @ F.mT + Q", "cov = F @ cov @ F.mT")]),
    dict(cell="kalman_predict", test="test_kalman_predict", why="F Sigma F instead of F Sigma F^T",
         replace=[("cov = F @ cov @ F.mT + Q", "cov = F @ cov @ F + Q")]),
    dict(cell="kalman_predict", test="test_kalman_predict", why="F^T Sigma F (transposes the wrong side)",
         replace=[("cov = F @ cov @ F.mT + Q", "cov = F.mT @ cov @ F + Q")]),
    dict(cell="kalman_predict", test="test_kalman_predict", why="multiplies the batch of means by F on the wrong side",
         replace=[("mean = mean @ F.mT", "mean = mean @ F")]),
    dict(cell="kalman_predict", test="test_kalman_predict", why="adds Q to the mean's covariance but only on the diagonal of F Sigma",
         replace=[("cov = F @ cov @ F.mT + Q", "cov = torch.diag_embed((F @ cov @ F.mT).diagonal(dim1=-2, dim2=-1)) + Q")]),
    dict(cell="kalman_predict", test="test_kalman_predict", why="updates the mean in place (changes the caller's tensor)",
         replace=[("mean = mean @ F.mT", "mean.copy_(mean @ F.mT)")]),
    # kalman_update
    dict(cell="kalman_update", test="test_kalman_update", why="forgets the measurement noise R in S",
         replace=[("S = H @ cov @ H.mT + R", "S = H @ cov @ H.mT")]),
    dict(cell="kalman_update", test="test_kalman_update", why="innovation with the wrong sign (H mu - z)",
         replace=[("innovation = z - mean @ H.mT", "innovation = mean @ H.mT - z")]),
    dict(cell="kalman_update", test="test_kalman_update", why="gain without S^-1 (K = Sigma H^T)",
         replace=[("gain = torch.linalg.solve(S, H @ cov).mT", "gain = (H @ cov).mT")]),
    dict(cell="kalman_update", test="test_kalman_update", why="(I + K H) Sigma instead of (I - K H) Sigma",
         replace=[("cov = (identity - gain @ H) @ cov", "cov = (identity + gain @ H) @ cov")]),
    dict(cell="kalman_update", test="test_kalman_update", why="never shrinks the covariance",
         replace=[("cov = (identity - gain @ H) @ cov", "cov = cov")]),
    dict(cell="kalman_update", test="test_kalman_update", why="divides by the diagonal of S instead of inverting it",
         replace=[("gain = torch.linalg.solve(S, H @ cov).mT",
                   "gain = (H @ cov).mT / S.diagonal(dim1=-2, dim2=-1)[..., None, :]")]),
    # associate
    dict(cell="associate", test="test_associate", why="solves on the raw costs and gates afterwards (SORT's original)",
         replace=[("cost.detach().double().clamp(max=max_cost)", "cost.detach().double().clamp(max=1e6)")]),
    dict(cell="associate", test="test_associate", why="maximises the cost instead of minimising it",
         replace=[("linear_sum_assignment(clipped)", "linear_sum_assignment(clipped, maximize=True)")]),
    dict(cell="associate", test="test_associate", why="forgets to drop the forbidden pairs after solving",
         replace=[("allowed = cost[rows, cols] <= max_cost", "allowed = cost[rows, cols] == cost[rows, cols]")]),
    dict(cell="associate", test="test_associate", why="greedy matching: each track takes its cheapest free detection",
         replace=[("rows, cols = (torch.as_tensor(a, dtype=torch.long) for a in linear_sum_assignment(clipped))",
                   "pairs, taken = [], set()\n"
                   "        for i in range(T):\n"
                   "            free = [j for j in range(D) if j not in taken]\n"
                   "            if free:\n"
                   "                j = min(free, key=lambda j: clipped[i, j])\n"
                   "                pairs.append((i, j))\n"
                   "                taken.add(j)\n"
                   "        rows = torch.tensor([p[0] for p in pairs], dtype=torch.long)\n"
                   "        cols = torch.tensor([p[1] for p in pairs], dtype=torch.long)")]),
    dict(cell="associate", test="test_associate", why="returns the unmatched tracks and detections swapped",
         replace=[("return matches, torch.nonzero(track_free).flatten(), torch.nonzero(detection_free).flatten()",
                   "return matches, torch.nonzero(detection_free).flatten(), torch.nonzero(track_free).flatten()")]),
    dict(cell="associate", test="test_associate", why="returns (detection, track) pairs instead of (track, detection)",
         replace=[("matches = torch.stack([rows, cols], dim=1)", "matches = torch.stack([cols, rows], dim=1)")]),
]
