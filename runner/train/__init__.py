"""LoRA training, one concern per module.

* :mod:`runner.train.job` -- :class:`~runner.train.job.TrainJob` (the schema's ``TrainConfig`` plus where
  things are) and the ``Emit`` callback type.
* :mod:`runner.train.backends` -- :func:`~runner.train.backends.run_training`, which picks the backend.
* :mod:`runner.train.worker` -- the same job in a child process (OpenBLAS preloaded for mlx), events as JSON lines.
* :mod:`runner.train.blas` -- the environment that preloads OpenBLAS into that child.
* :mod:`runner.train.data` -- records to token ids, batches of similar length.
* :mod:`runner.train.loop` -- the iteration loop both backends share: reports, validation, checkpoints, best adapter.
* :mod:`runner.train.checkpoints` -- finding the checkpoint to resume from; the best adapter on disk.
* :mod:`runner.train.schedule` -- the learning-rate schedule, for mlx and for torch.
* :mod:`runner.train.mlx_backend`, :mod:`runner.train.peft_backend` -- model setup and one step, per library.
* :mod:`runner.train.export` -- mlx adapter -> PEFT layout, PEFT adapter -> llama.cpp GGUF LoRA.
* :mod:`runner.train.fidelity` -- does llama.cpp + adapter.gguf predict what the trainer's model predicts?
"""
