"""Mistakes learners make when writing class-balanced weights, the balanced softmax and tau-normalisation (notebook 47-imbalance-training)."""

MUTANTS = [
    # effective_number_weights
    dict(cell="effective_number_weights", test="test_effective_number_weights", why="weights the effective number instead of its inverse",
         replace=[("weights = 1.0 / effective", "weights = effective")]),
    dict(cell="effective_number_weights", test="test_effective_number_weights", why="forgets to normalise the weights to sum to C",
         replace=[("return weights * len(counts) / weights.sum()", "return weights")]),
    dict(cell="effective_number_weights", test="test_effective_number_weights", why="normalises to sum to 1 instead of C",
         replace=[("return weights * len(counts) / weights.sum()", "return weights / weights.sum()")]),
    dict(cell="effective_number_weights", test="test_effective_number_weights", why="uses beta ** (n - 1): one sample too few",
         replace=[("beta ** counts", "beta ** (counts - 1)")]),
    dict(cell="effective_number_weights", test="test_effective_number_weights", why="uses the raw counts n (the beta -> 1 limit) whatever beta",
         replace=[("effective = (1.0 - beta ** counts) / (1.0 - beta)", "effective = counts.clone()")]),
    # balanced_softmax_loss
    dict(cell="balanced_softmax_loss", test="test_balanced_softmax_loss", why="subtracts the log prior (post-hoc adjustment) instead of adding it",
         replace=[("F.cross_entropy(logits + log_prior, targets)", "F.cross_entropy(logits - log_prior, targets)")]),
    dict(cell="balanced_softmax_loss", test="test_balanced_softmax_loss", why="adds the counts, not their log",
         replace=[("F.cross_entropy(logits + log_prior, targets)", "F.cross_entropy(logits + log_prior.exp(), targets)")]),
    dict(cell="balanced_softmax_loss", test="test_balanced_softmax_loss", why="weights the cross-entropy by the counts instead",
         replace=[("F.cross_entropy(logits + log_prior, targets)", "F.cross_entropy(logits, targets, weight=log_prior.exp())")]),
    dict(cell="balanced_softmax_loss", test="test_balanced_softmax_loss", why="sums instead of averaging",
         replace=[("F.cross_entropy(logits + log_prior, targets)", "F.cross_entropy(logits + log_prior, targets, reduction='sum')")]),
    dict(cell="balanced_softmax_loss", test="test_balanced_softmax_loss", why="multiplies softmax probabilities by n and takes the log (unstable)",
         replace=[("F.cross_entropy(logits + log_prior, targets)",
                   "-torch.log((log_prior.exp() * logits.exp() / (log_prior.exp() * logits.exp()).sum(1, keepdim=True))"
                   "[torch.arange(len(targets)), targets]).mean()")]),
    # tau_normalize
    dict(cell="tau_normalize", test="test_tau_normalize", why="normalises columns instead of rows",
         replace=[("weight.norm(dim=1, keepdim=True)", "weight.norm(dim=0, keepdim=True)")]),
    dict(cell="tau_normalize", test="test_tau_normalize", why="multiplies by the norm to the power tau",
         replace=[("return weight / norms ** tau", "return weight * norms ** tau")]),
    dict(cell="tau_normalize", test="test_tau_normalize", why="divides by the norm times tau",
         replace=[("return weight / norms ** tau", "return weight / (norms * tau)")]),
    dict(cell="tau_normalize", test="test_tau_normalize", why="uses the squared norm",
         replace=[("norms = weight.norm(dim=1, keepdim=True)", "norms = (weight ** 2).sum(dim=1, keepdim=True)")]),
    dict(cell="tau_normalize", test="test_tau_normalize", why="normalises in place, changing the model's weights",
         replace=[("return weight / norms ** tau", "return weight.div_(norms ** tau)")]),
]
