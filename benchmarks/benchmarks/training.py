"""One training step of the main job (char-LM) and of seq2seq, as ``rnnkit train`` runs it.

``Trainer.train_step``: the next batch, forward, loss, backward, clipping, the Adam update, with each
task's default model (char-LM: emb 64, 2 x LSTM 128, batch 32, bptt 100, on the standard-library corpus;
seq2seq: the dates corpus, bidirectional LSTM encoder with attention, batch 64).  Wall time of one step.
"""
from rnnkit.tasks.charlm import CharLM, CharLMConfig
from rnnkit.tasks.seq2seq import Seq2SeqTask, Seq2SeqTaskConfig
from rnnkit.train.config import TrainConfig
from rnnkit.train.trainer import Trainer


def _trainer(task):
    trainer = Trainer(task, TrainConfig(steps=10**6, eval_every=0, progress=False), out_dir=None, eval_split=None)
    for _ in range(3):  # compile (or load the cache), plan, allocate
        trainer.train_step()
    return trainer


class CharLMStep:
    number = 1
    repeat = (5, 20, 10.0)
    timeout = 600

    def setup(self):
        self.trainer = _trainer(CharLM(CharLMConfig(), max_chars=200_000))

    def time_train_step(self):
        self.trainer.train_step()


class Seq2SeqStep:
    number = 1
    repeat = (5, 20, 10.0)
    timeout = 600

    def setup(self):
        self.trainer = _trainer(Seq2SeqTask(Seq2SeqTaskConfig(dates=5000)))

    def time_train_step(self):
        self.trainer.train_step()
