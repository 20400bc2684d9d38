"""Writing a checkpoint once, straight into its partial file beside last.ckpt.

Lightning's TorchCheckpointIO serialises into memory, writes that into a file of the system temp
dir (an fsspec transaction) and then copies it to the destination: every save needs free space in
/tmp as large as the checkpoint (on a cluster node often a small RAM disk; paper_3b's checkpoint with
its AdamW state is tens of GB) and moves the bytes twice. Here torch.save writes the destination
file itself (StepCheckpoints passes `.last.ckpt.partial` and renames it once complete), and a failed
write removes what it wrote, so a full disk keeps no half file and the previous checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO


class DirectCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options, got {storage_options!r}")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with open(path, "wb") as f:
                writes = _Writes(f)
                try:
                    torch.save(checkpoint, writes)
                except RuntimeError as exc:
                    if writes.error is not None:  # torch reports a failed write as "unexpected pos": say why
                        raise writes.error from exc
                    raise
        except BaseException:
            path.unlink(missing_ok=True)
            raise


class _Writes:
    """The file torch.save writes to, keeping the OSError of a failed write (no space left, a quota),
    which torch's zip writer would otherwise turn into a RuntimeError about file positions."""

    def __init__(self, f):
        self.f, self.error = f, None

    def write(self, data) -> int:
        try:
            return self.f.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def flush(self) -> None:
        self.f.flush()


def uses_checkpoint_io(strategy: Any) -> bool:
    """Strategies that save through a CheckpointIO plugin (DeepSpeed and XLA write their own way)."""
    return not (isinstance(strategy, str) and strategy.startswith(("deepspeed", "xla", "single_xla", "single_tpu")))
