"""Mistakes learners make when counting parameters, freezing by name and replacing a classifier head
(notebook 03-transfer-learning-mechanics)."""

MUTANTS = [
    # count_trainable
    dict(cell="count_trainable", test="test_count_trainable", why="counts parameter tensors, not scalars",
         replace=[("trainable = sum(p.numel() for p in params if p.requires_grad)",
                   "trainable = sum(1 for p in params if p.requires_grad)"),
                  ("total = sum(p.numel() for p in params)", "total = len(params)")]),
    dict(cell="count_trainable", test="test_count_trainable", why="ignores requires_grad",
         replace=[("sum(p.numel() for p in params if p.requires_grad)", "sum(p.numel() for p in params)")]),
    dict(cell="count_trainable", test="test_count_trainable", why="counts the state dict, batch-norm buffers included",
         replace=[("total = sum(p.numel() for p in params)",
                   "total = sum(t.numel() for t in model.state_dict().values())")]),
    dict(cell="count_trainable", test="test_count_trainable",
         why="walks every module's own parameters, so a tied weight counts twice",
         replace=[("params = list(model.parameters())",
                   "params = [p for m in model.modules() for p in m.parameters(recurse=False)]")]),
    dict(cell="count_trainable", test="test_count_trainable", why="counts only the frozen parameters as trainable",
         replace=[("if p.requires_grad)", "if not p.requires_grad)")]),
    # freeze
    dict(cell="freeze", test="test_freeze", why="matches prefixes without the dot boundary (features.1 keeps features.10)",
         replace=[('name.startswith(prefix + ".")', "name.startswith(prefix)")]),
    dict(cell="freeze", test="test_freeze", why="only freezes, never unfreezes the kept submodules",
         replace=[("parameter.requires_grad_(inside)", "if not inside:\n            parameter.requires_grad_(False)")]),
    dict(cell="freeze", test="test_freeze", why="freezes the kept submodules and trains the rest",
         replace=[("parameter.requires_grad_(inside)", "parameter.requires_grad_(not inside)")]),
    dict(cell="freeze", test="test_freeze", why="forgets to return the model",
         replace=[("    return model\n", "    return None\n")]),
    dict(cell="freeze", test="test_freeze", why="tests substrings anywhere in the name, not prefixes",
         replace=[('name == prefix or name.startswith(prefix + ".")', "prefix in name")]),
    # replace_head
    dict(cell="replace_head", test="test_replace_head", why="replaces the first linear layer instead of the last",
         replace=[("name, old = linears[-1]", "name, old = linears[0]")]),
    dict(cell="replace_head", test="test_replace_head", why="always gives the new head a bias",
         replace=[("bias=old.bias is not None)", "bias=True)")]),
    dict(cell="replace_head", test="test_replace_head", why="ignores the old layer's dtype",
         replace=[("new = new.to(device=old.weight.device, dtype=old.weight.dtype)", "new = new.to(old.weight.device)")]),
    dict(cell="replace_head", test="test_replace_head", why="copies requires_grad from the frozen old head",
         replace=[("    parent_name, _, attribute", "    new.requires_grad_(old.weight.requires_grad)\n    parent_name, _, attribute")]),
    dict(cell="replace_head", test="test_replace_head", why="replaces the whole parent module (drops MobileNetV2's Dropout)",
         replace=[("setattr(model.get_submodule(parent_name), attribute, new)",
                   "setattr(model, parent_name or attribute, new) if parent_name.count('.') == 0 else "
                   "setattr(model.get_submodule(parent_name.rpartition('.')[0]), parent_name.rpartition('.')[2], new)")]),
    dict(cell="replace_head", test="test_replace_head", why="returns the old layer",
         replace=[("    return new\n", "    return old\n")]),
    dict(cell="replace_head", test="test_replace_head", why="swaps in_features and out_features",
         replace=[("nn.Linear(old.in_features, num_classes,", "nn.Linear(num_classes, old.in_features,")]),
]
