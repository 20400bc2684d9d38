"""The life of one training run: from a composed config to a finished (or stopped) MLflow run.

experiment.py  what `python -m balance_lab.train` does with a config: open the run, build, fit,
               validate, summarise; continue a stopped run of the same config
build.py       config -> DataModule, MoE LM with its Balancer, LightningModule, Trainer
lit_module.py  the LightningModule: LM loss + balancing terms, step-end balancer updates, metrics
callbacks.py   progress, throughput, heartbeat, fail_after_steps (a test hook)
checkpointing.py, resume.py   checkpoints every N steps and on a signal; `run --resume`
loss_watch.py, host_copy.py   the NaN check and the stop vote, read from the device one step late

May import: the shared leaves, model/, balancing/, data/, store/ and config/. Nothing here
imports sweeping/, report/ or the cli.
"""
