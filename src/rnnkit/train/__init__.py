"""Training: one loop for every task.

* :mod:`.task`     the Task contract (what a task supplies) and the evaluation record
* :mod:`.config`   TrainConfig: every training setting
* :mod:`.trainer`  Trainer: loop, optimizer, clipping, schedule, evaluation cadence, checkpoints, resume
* :mod:`.parallel` data parallelism over MPI: the batch shards, the carry gathered and sharded, the agreed stop
* :mod:`.state`    checkpoint layout; save_task for a model without training state; restore: the
                   from_checkpoint of a task
* :mod:`.guard`    checks before anything is built: read_checkpoint (the one validated read), load_task,
                   check_model_fits (memory)
* :mod:`.log`      metrics.jsonl

Quick use::

    trainer = Trainer(task, TrainConfig(steps=1000, lr=2e-3), out_dir="runs/x")
    result = trainer.fit(on_eval=lambda trainer, record: print(record["val_loss"]))
    trainer = Trainer.resume("runs/x/last.safetensors", type(task))   # continue later
"""
import os  # noqa: F401  (tests patch rnnkit.train.os.replace: the log trim must use os.replace)

from rnnkit.train.config import TrainConfig
from rnnkit.train.log import read_metrics
from rnnkit.train.guard import check_model_fits, load_task, read_checkpoint
from rnnkit.train.state import restore, save_task
from rnnkit.train.task import ModelPlan, Task, metrics_of
from rnnkit.train.trainer import Trainer, TrainResult

__all__ = ["Task", "TrainConfig", "Trainer", "TrainResult", "load_task", "save_task", "read_checkpoint",
           "read_metrics", "metrics_of", "ModelPlan", "check_model_fits", "restore"]
