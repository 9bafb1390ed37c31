"""Where models run and in which precision: the one place that chooses device and dtype.

The trainer and the torch sampling engine both call `pick_device`, so they run the same base
precision and their logprobs stay comparable; nothing else in the project names a device.
"""

import torch


def pick_device() -> tuple[torch.device, torch.dtype]:
    """The device models run on and the dtype of their frozen base weights."""
    if torch.cuda.is_available():
        return torch.device("cuda"), torch.bfloat16
    return torch.device("cpu"), torch.float32


def has_cuda() -> bool:
    return torch.cuda.is_available()
