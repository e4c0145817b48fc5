"""Mistakes learners make when writing a temperature softmax, the KD loss and label smoothing (10-distillation-why)."""

MUTANTS = [
    # soften
    dict(cell="soften", test="test_soften", why="normalises over the batch axis instead of the classes",
         replace=[("torch.softmax(logits / T, dim=-1)", "torch.softmax(logits / T, dim=0)")]),
    dict(cell="soften", test="test_soften", why="multiplies by the temperature instead of dividing",
         replace=[("torch.softmax(logits / T, dim=-1)", "torch.softmax(logits * T, dim=-1)")]),
    dict(cell="soften", test="test_soften", why="forgets the temperature",
         replace=[("torch.softmax(logits / T, dim=-1)", "torch.softmax(logits, dim=-1)")]),
    dict(cell="soften", test="test_soften", why="exponentiates without subtracting the maximum (overflows)",
         replace=[("torch.softmax(logits / T, dim=-1)",
                   "torch.exp(logits / T) / torch.exp(logits / T).sum(-1, keepdim=True)")]),
    # kd_loss
    dict(cell="kd_loss", test="test_kd_loss", why="forgets the T**2 factor",
         replace=[("alpha * T * T * kl", "alpha * kl")]),
    dict(cell="kd_loss", test="test_kd_loss", why="KL in the wrong direction: KL(student || teacher)",
         replace=[("(log_p_t.exp() * (log_p_t - log_p_s))", "(log_p_s.exp() * (log_p_s - log_p_t))")]),
    dict(cell="kd_loss", test="test_kd_loss", why="averages the KL over classes too (reduction='mean', not 'batchmean')",
         replace=[(".sum(dim=-1).mean()", ".mean()")]),
    dict(cell="kd_loss", test="test_kd_loss", why="softens only the teacher",
         replace=[("F.log_softmax(student_logits / T, dim=-1)", "F.log_softmax(student_logits, dim=-1)")]),
    dict(cell="kd_loss", test="test_kd_loss", why="swaps the weights of the two terms",
         replace=[("return alpha * T * T * kl + (1 - alpha) * F.cross_entropy(student_logits, labels)",
                   "return (1 - alpha) * T * T * kl + alpha * F.cross_entropy(student_logits, labels)")]),
    dict(cell="kd_loss", test="test_kd_loss", why="computes the hard-label term on the softened logits",
         replace=[("F.cross_entropy(student_logits, labels)", "F.cross_entropy(student_logits / T, labels)")]),
    dict(cell="kd_loss", test="test_kd_loss", why="uses the cross-entropy with soft targets, not the KL (off by the teacher's entropy)",
         replace=[("(log_p_t.exp() * (log_p_t - log_p_s))", "(log_p_t.exp() * (-log_p_s))")]),
    dict(cell="kd_loss", test="test_kd_loss", why="takes the log of the probabilities (log(0) for confident teachers)",
         replace=[("log_p_t = F.log_softmax(teacher_logits.detach() / T, dim=-1)",
                   "log_p_t = torch.log(F.softmax(teacher_logits.detach() / T, dim=-1))")]),
    # smooth_labels
    dict(cell="smooth_labels", test="test_smooth_labels", why="spreads eps over the C - 1 wrong classes only",
         replace=[("(1 - eps) * F.one_hot(labels, num_classes).float() + eps / num_classes",
                   "(1 - eps - eps / (num_classes - 1)) * F.one_hot(labels, num_classes).float()"
                   " + eps / (num_classes - 1)")]),
    dict(cell="smooth_labels", test="test_smooth_labels", why="forgets to scale down the one-hot part",
         replace=[("(1 - eps) * F.one_hot", "F.one_hot")]),
    dict(cell="smooth_labels", test="test_smooth_labels", why="adds the whole eps to every class",
         replace=[("+ eps / num_classes", "+ eps")]),
]
