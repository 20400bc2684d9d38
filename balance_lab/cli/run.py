"""`balance-lab run`: check the overrides, then hand the process over to the training entry point."""

from __future__ import annotations

import os
import sys
from typing import List, Optional

import typer

from balance_lab.cli.app import PASSTHROUGH, OverridesArg, app, check, compose, fail, prepare_data, set_verbose


@app.command(context_settings=PASSTHROUGH)
def run(
    overrides: Optional[List[str]] = OverridesArg,
    resume: Optional[str] = typer.Option(
        None,
        "--resume",
        help="Continue a stopped run (KILLED, FAILED or a RUNNING one "
        "whose process is gone) from its last checkpoint: an MLflow run id or a "
        "checkpoint file. Same run, same config; no overrides.",
    ),
) -> None:
    """Train one MoE LM and record it in MLflow.

    Composes conf/config.yaml with the overrides (groups: model, balance, data, trainer, optim,
    logger), checks every value, and runs `python -m balance_lab.train` with them. Examples:

        balance-lab run                       # tiny model, loss-free balancing
        balance-lab run balance=aux_loss balance.alpha=1e-2 seed=1
        balance-lab run balance.update_rate=1e-2 trainer.max_steps=400
        balance-lab run balance=loss_free_seq_aux   # DeepSeek-V3 style
        balance-lab run data=text_dir data.path=~/corpus
        balance-lab run --resume 3f2a...      # after Ctrl-C, a crash or kill -9

    The store is MLFLOW_TRACKING_URI if set, else sqlite:///mlflow.db in the working directory.
    A checkpoint is saved every checkpoint.every_n_steps steps and on Ctrl-C or SIGTERM (the run
    then stops at the end of its optimizer step and is marked KILLED). Exit status: 0 finished,
    1 failed, 2 bad input, 130/143 stopped by SIGINT/SIGTERM.
    """
    overrides = list(overrides or [])
    if "--verbose" in overrides or "-v" in overrides:
        overrides = [o for o in overrides if o not in ("--verbose", "-v")]
        set_verbose()
    bad_options = [o for o in overrides if o.startswith("-")]
    if bad_options:
        fail(f"unknown option {bad_options[0]!r} for run; options: --resume, --verbose (overrides are key=value)")
    if resume is not None:  # `--resume ""` (an unset $RUN_ID) must not start a fresh run
        if not resume.strip():
            fail("--resume needs a run id or a checkpoint file; got an empty value (an unset variable?)")
        argv = _resume_argv(resume, overrides)
    else:
        cfg = compose(overrides)  # a typo fails here, in one line, before torch is imported
        prepare_data([check(cfg).source])
        argv = [sys.executable, "-m", "balance_lab.train", *overrides]
    sys.stdout.flush()
    os.execv(sys.executable, argv)  # the training process takes over: signals and exit status are its own


RESUME_CONFIG = "resume_config"  # <checkpoint folder>/resume_config.yaml: the config a resume trains with


def _resume_argv(ref: str, overrides: list[str]) -> list[str]:
    from balance_lab.errors import ConfigError
    from balance_lab.store import tracking
    from balance_lab.store.reachable import check_reachable
    from balance_lab.training.resume import resume_target

    if overrides:
        fail(
            f"--resume continues a run with the config it started with; leave out the overrides ({' '.join(overrides)})"
        )
    uri = tracking.resolve_tracking_uri()
    try:
        check_reachable(uri)
        target = resume_target(ref, uri)
    except ConfigError as exc:
        fail(str(exc))
    # Beside the checkpoint, not in a temp folder: the exec'd process cannot clean up after this one,
    # and the checkpoint's folder is written to anyway (the resumed run saves its checkpoints there).
    config_dir = target.checkpoint.parent
    try:
        (config_dir / f"{RESUME_CONFIG}.yaml").write_text(target.config_yaml)
    except OSError as exc:
        fail(f"--resume {ref}: cannot write the run's config beside its checkpoint in {config_dir} ({exc.strerror})")
    typer.echo(f"resuming {target.run_name} ({target.run_id}) at step {target.step} from {target.checkpoint}", err=True)
    return [
        sys.executable,
        "-m",
        "balance_lab.train",
        "--config-path",
        str(config_dir),
        "--config-name",
        RESUME_CONFIG,
        f"++resume_run_id={target.run_id}",
        f"++resume_ckpt='{target.checkpoint}'",
        f"++checkpoint.dir='{target.checkpoint.parent}'",
        f"++logger.tracking_uri='{uri}'",
    ]
