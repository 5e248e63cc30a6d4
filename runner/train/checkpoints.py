"""Checkpoints on disk: which one a killed run resumes from, and the best adapter so far.

Layout under ``TrainJob.checkpoint_dir``:

* mlx: ``segment_<start>/<k>_adapters.safetensors`` holds iteration ``start + k`` (a run resumed
  at ``start`` writes into its own segment, as mlx-lm numbered them);
* peft: ``<iteration>/`` with the adapter and ``trainer_state.pt`` (optimizer and schedule);
* both: ``best/`` with the adapter of the lowest validation loss so far and ``best.json``
  (iteration, loss).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

CHECKPOINTS_DIR = "checkpoints"
BEST_DIR = "best"
BEST_INFO = "best.json"
MLX_ADAPTER_FILE = "adapters.safetensors"
_MLX_CKPT = re.compile(r"^(\d{7})_adapters\.safetensors$")
_SEGMENT = re.compile(r"^segment_(\d{7})$")


def is_whole_safetensors(path: Path) -> bool:
    """Whether a safetensors file is as long as its own header says (8-byte header size, JSON header,
    then the tensor data up to the largest end offset)."""
    try:
        with open(path, "rb") as handle:
            header_size = int.from_bytes(handle.read(8), "little")
            header = json.loads(handle.read(header_size))
    except (OSError, ValueError):
        return False
    data_end = max((entry["data_offsets"][1] for name, entry in header.items() if name != "__metadata__"), default=0)
    return path.stat().st_size == 8 + header_size + data_end


def latest_checkpoint(job) -> tuple[int, Optional[Path]]:
    """(iteration, path) of the newest checkpoint a killed run left behind, or (0, None)."""
    root = Path(job.checkpoint_dir)
    if not root.is_dir():
        return 0, None
    best: tuple[int, Optional[Path]] = (0, None)
    if job.backend == "mlx":
        for segment in root.iterdir():
            seg = _SEGMENT.match(segment.name)
            if not seg or not segment.is_dir():
                continue
            for file in segment.iterdir():
                found = _MLX_CKPT.match(file.name)
                if found and is_whole_safetensors(file):  # a kill can cut a file short (mlx-lm wrote in place)
                    iteration = int(seg.group(1)) + int(found.group(1))
                    if iteration > best[0]:
                        best = (iteration, file)
    else:
        for folder in root.iterdir():
            if folder.name.isdigit() and (folder / "trainer_state.pt").is_file():
                iteration = int(folder.name)
                if iteration > best[0]:
                    best = (iteration, folder)
    return best


def mlx_checkpoint_path(checkpoint_dir: Path, start: int, iteration: int) -> Path:
    """Where the mlx checkpoint of ``iteration`` goes in a run that started (or resumed) at ``start``."""
    return Path(checkpoint_dir) / f"segment_{start:07d}" / f"{iteration - start:07d}_{MLX_ADAPTER_FILE}"


def replace_dir(tmp: Path, folder: Path) -> None:
    """Move a finished temp folder into place (the old one, if any, goes first)."""
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)


def temp_dir_for(folder: Path) -> Path:
    tmp = folder.with_name(folder.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


@dataclass
class BestAdapter:
    """The adapter with the lowest validation loss seen so far, kept on disk so a resumed run knows it."""

    folder: Path
    iteration: int = 0
    val_loss: float = float("inf")

    @classmethod
    def restore(cls, checkpoint_dir: Path, start: int) -> "BestAdapter":
        """The best adapter up to iteration ``start``; one from later iterations of a killed run is dropped,
        because the resumed run trains those iterations again."""
        best = cls(Path(checkpoint_dir) / BEST_DIR)
        info_file = best.folder / BEST_INFO
        if info_file.is_file():
            info = json.loads(info_file.read_text())
            if 0 < info["iteration"] <= start:
                best.iteration, best.val_loss = int(info["iteration"]), float(info["val_loss"])
        if not best.iteration and best.folder.exists():
            shutil.rmtree(best.folder)
        return best

    @property
    def found(self) -> bool:
        return self.iteration > 0

    def offer(self, iteration: int, val_loss: float, save: Callable[[Path], None]) -> bool:
        """Keep this iteration's adapter (written by ``save(folder)``) when its loss is the lowest so far."""
        if not val_loss < self.val_loss:  # NaN never wins
            return False
        tmp = temp_dir_for(self.folder)
        save(tmp)
        (tmp / BEST_INFO).write_text(json.dumps({"iteration": iteration, "val_loss": val_loss}))
        replace_dir(tmp, self.folder)
        self.iteration, self.val_loss = iteration, val_loss
        return True
