"""LoRA supervised fine-tuning on TRL + PEFT, checkpoints and resume, export (merge, GGUF).

Heavy dependencies (torch, transformers, trl) are imported when a run starts, so importing
this package (for configs, records, the CLI) stays cheap.
"""

from openclone.store.trained import TrainedModel, get_trained, list_trained
from openclone.train.config import TrainConfig
from openclone.train.sft import Progress, SFTRunner, TrainResult

__all__ = [
    "Progress",
    "SFTRunner",
    "TrainConfig",
    "TrainResult",
    "TrainedModel",
    "get_trained",
    "list_trained",
]
