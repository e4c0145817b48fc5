"""Mistakes learners make in affine quantisation and byte counting (notebook 11-quantization-memory)."""

MUTANTS = [
    # choose_qparams
    dict(cell="choose_qparams", test="test_choose_qparams", why="does not stretch the range to include 0",
         replace=[("lo = torch.clamp(x_min.float(), max=0.0)", "lo = x_min.float()"),
                  ("hi = torch.clamp(x_max.float(), min=0.0)", "hi = x_max.float()")]),
    dict(cell="choose_qparams", test="test_choose_qparams", why="divides by the number of levels, not of gaps",
         replace=[("/ float(qmax - qmin)", "/ float(qmax - qmin + 1)")]),
    dict(cell="choose_qparams", test="test_choose_qparams", why="wrong sign of the zero point",
         replace=[("zero_point = qmin - torch.round(lo / scale)", "zero_point = qmin + torch.round(lo / scale)")]),
    dict(cell="choose_qparams", test="test_choose_qparams", why="no epsilon: an all-zero tensor gets scale 0",
         replace=[("scale = torch.clamp(scale, min=torch.finfo(torch.float32).eps)", "pass")]),
    dict(cell="choose_qparams", test="test_choose_qparams", why="floors instead of rounding the zero point",
         replace=[("torch.round(lo / scale)", "torch.floor(lo / scale)")]),
    # quantize / dequantize
    dict(cell="quantize", test="test_quantize", why="no clamping to [qmin, qmax]",
         replace=[("q = torch.clamp(torch.round(x / s) + z, qmin, qmax)", "q = torch.round(x / s) + z")]),
    dict(cell="quantize", test="test_quantize", why="truncates instead of rounding",
         replace=[("torch.round(x / s)", "torch.trunc(x / s)")]),
    dict(cell="quantize", test="test_quantize", why="per-channel scales broadcast along the last axis",
         replace=[("    shape[axis] = -1\n", "    shape[-1] = -1\n")]),
    dict(cell="quantize", test="test_quantize", why="dequantises as scale * q + zero_point",
         replace=[("return (s * (q.to(torch.float32) - z)).to(torch.float32)",
                   "return (s * q.to(torch.float32) + z).to(torch.float32)")]),
    dict(cell="quantize", test="test_quantize", why="always returns int32 codes",
         replace=[("dtype = torch.int8 if (qmin >= -128 and qmax <= 127) else torch.int32", "dtype = torch.int32")]),
    # model_nbytes
    dict(cell="model_nbytes", test="test_model_nbytes", why="forgets the scale / zero-point overhead",
         replace=[("total += 8 * (tensor.shape[0] if per_channel else 1)", "pass")]),
    dict(cell="model_nbytes", test="test_model_nbytes", why="quantises biases and statistics too",
         replace=[("if tensor.dim() >= 2 and bits != 32:", "if bits != 32:")]),
    dict(cell="model_nbytes", test="test_model_nbytes", why="rounds packed bits down",
         replace=[("(tensor.numel() * bits + 7) // 8", "tensor.numel() * bits // 8")]),
    dict(cell="model_nbytes", test="test_model_nbytes", why="assumes every float32 tensor, ignoring dtypes",
         replace=[("total += tensor.numel() * tensor.element_size()", "total += tensor.numel() * 4")]),
]
