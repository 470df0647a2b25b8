"""He (Kaiming) initialisation, the study's recipe for training from scratch."""

from __future__ import annotations

import torch
from torch import nn


def _weight_to_init(module: nn.Module) -> torch.Tensor:
    # With a torch.nn.utils.prune mask attached, `weight` is recomputed from `weight_orig` on every
    # forward; initialising `weight` would be overwritten, so the parameter is `weight_orig`.
    return module.weight_orig if hasattr(module, "weight_orig") else module.weight


@torch.no_grad()
def init_kaiming(model: nn.Module) -> nn.Module:
    """Re-initialise every conv/linear/BN of `model` in place and return it.

    Conv: He normal, fan_out, ReLU gain (as torchvision's ResNets). Linear: He normal, fan_in
    (the classifier feeds a softmax, so preserving the forward variance is what matters there).
    Biases 0. BatchNorm: weight 1, bias 0, running statistics reset.
    """
    for module in model.modules():
        if isinstance(module, nn.Conv2d | nn.Linear):
            weight = _weight_to_init(module)
            mode = "fan_out" if isinstance(module, nn.Conv2d) else "fan_in"
            nn.init.kaiming_normal_(weight, mode=mode, nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(getattr(module, "bias_orig", module.bias))
            if hasattr(module, "weight_mask"):
                # Keep the visible masked weight consistent before the next forward recomputes it.
                module.weight = module.weight_orig * module.weight_mask
        elif isinstance(module, nn.modules.batchnorm._BatchNorm):
            if module.affine:
                nn.init.ones_(_weight_to_init(module))
                nn.init.zeros_(module.bias)
            if module.track_running_stats:
                module.reset_running_stats()
    return model
