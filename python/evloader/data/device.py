# SPDX-License-Identifier: Apache-2.0
"""Moving batches to a GPU, shared by SequentialDataLoader and CDProcessorDataLoader: ``cuda()``, ``to()``,
``cpu()`` and the host-to-device hand-over.

Why ``pin_memory`` copies into torch's pinned memory instead of page-locking the loader's own buffers: a
batch's host buffer goes back to the engine's pool as soon as the CPU tensor is dropped, and a worker refills it
while an asynchronous copy from it may still be queued on the GPU stream (the GPU would then read the next
batch's data). Torch's pinned-memory allocator keeps a block until every copy that reads it has completed, so
``tensor.pin_memory().to(device, non_blocking=True)`` is safe; the extra host copy costs far less than the
transfer it makes asynchronous."""
from __future__ import annotations


class DeviceMixin:
    """Expects ``self.device`` (None or a torch device / string) and ``self.pin_memory`` (bool)."""

    def cuda(self, device=None):
        import torch

        if not torch.cuda.is_available():
            raise RuntimeError("cuda() asked for, but torch sees no CUDA device")
        self.device = torch.device("cuda") if device is None else torch.device(device)
        return self

    def to(self, device):
        import torch

        self.device = torch.device(device)
        return self

    def cpu(self):
        self.device = None
        return self

    def _on_device(self) -> bool:
        return self.device is not None and str(self.device) != "cpu"

    def _inputs_to_device(self, inputs):
        """The batch tensor on self.device; with pin_memory the copy is asynchronous (see the module doc)."""
        if self.pin_memory:
            return inputs.pin_memory().to(self.device, non_blocking=True)
        return inputs.to(self.device)
