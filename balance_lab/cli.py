"""The `balance-lab` command line. Kept thin and import-light: `balance-lab --help` is instant;
torch, lightning and mlflow load only inside the command that needs them."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import List, Optional

import typer

app = typer.Typer(
    help="Load-balancing ablations of Mixture-of-Experts language models: train, sweep, report, browse.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
    pretty_exceptions_enable=False,
)
configs_app = typer.Typer(help="Inspect the Hydra configs (conf/).", no_args_is_help=True)
app.add_typer(configs_app, name="configs")
data_app = typer.Typer(help="Prepare data for large runs (BPE token files).", no_args_is_help=True)
app.add_typer(data_app, name="data")

_PASSTHROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}
OverridesArg = typer.Argument(None, help="Hydra overrides, e.g. model=tiny balance=aux_loss trainer.max_steps=100 seed=1",
                              show_default=False)


@app.callback()
def main(verbose: bool = typer.Option(False, "--verbose", "-v", help="On an error, print the full error (Hydra's "
                                      "message, Python's traceback) instead of one line.")) -> None:
    """Load-balancing ablations of Mixture-of-Experts language models: train, sweep, report, browse."""
    if verbose:
        _set_verbose()


def _set_verbose() -> None:
    from balance_lab.errors import VERBOSE_ENV

    os.environ[VERBOSE_ENV] = "1"
    os.environ["HYDRA_FULL_ERROR"] = "1"  # the training process shows Hydra's full error too


def _fail(message: str, code: int = 2) -> None:
    """One line on stderr and exit `code`; with --verbose, the exception being handled in full first."""
    from balance_lab.errors import VERBOSE_ENV

    if os.environ.get(VERBOSE_ENV) and sys.exc_info()[0] is not None:
        import traceback

        traceback.print_exc()
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@app.command(context_settings=_PASSTHROUGH)
def run(
    overrides: Optional[List[str]] = OverridesArg,
    resume: Optional[str] = typer.Option(None, "--resume", help="Continue a stopped run (KILLED, FAILED or a RUNNING one "
                                         "whose process is gone) from its last checkpoint: an MLflow run id or a "
                                         "checkpoint file. Same run, same config; no overrides."),
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
        _set_verbose()
    bad_options = [o for o in overrides if o.startswith("-")]
    if bad_options:
        _fail(f"unknown option {bad_options[0]!r} for run; options: --resume, --verbose (overrides are key=value)")
    if resume:
        argv = _resume_argv(resume, overrides)
    else:
        cfg = _compose(overrides)  # a typo fails here, in one line, before torch is imported
        _check(cfg)
        argv = [sys.executable, "-m", "balance_lab.train", *overrides]
    sys.stdout.flush()
    os.execv(sys.executable, argv)  # the training process takes over: signals and exit status are its own


def _existing_store(tracking_uri: str | None) -> str:
    """The store URI (option, MLFLOW_TRACKING_URI, default); a SQLite file that does not exist is an error
    (reading commands must not create an empty store)."""
    from balance_lab import tracking

    uri = tracking.resolve_tracking_uri(tracking_uri)
    db = tracking.sqlite_file(uri)
    if db is not None and not db.exists():
        _fail(f"no MLflow store at {uri} (train or sweep first, or pass --tracking-uri / set MLFLOW_TRACKING_URI)")
    return uri


def _compose(overrides: list[str]):
    from balance_lab.compose import compose_config
    from balance_lab.errors import ConfigError

    try:
        return compose_config(overrides)
    except ConfigError as exc:
        _fail(str(exc))


def _check(cfg) -> None:
    """Every value and the store, before a run exists (the training process checks again)."""
    from balance_lab import tracking
    from balance_lab.errors import ConfigError
    from balance_lab.validation import check_config

    try:
        check_config(cfg, tracking_uri=tracking.resolve_tracking_uri(cfg.logger.tracking_uri))
    except ConfigError as exc:
        _fail(str(exc))


def _resume_argv(ref: str, overrides: list[str]) -> list[str]:
    import tempfile

    from balance_lab import tracking
    from balance_lab.errors import ConfigError
    from balance_lab.resume import resume_target

    if overrides:
        _fail(f"--resume continues a run with the config it started with; leave out the overrides ({' '.join(overrides)})")
    uri = tracking.resolve_tracking_uri()
    try:
        target = resume_target(ref, uri)
    except ConfigError as exc:
        _fail(str(exc))
    config_dir = Path(tempfile.mkdtemp(prefix="balance-lab-resume-"))
    (config_dir / "config.yaml").write_text(target.config_yaml)
    typer.echo(f"resuming {target.run_name} ({target.run_id}) at step {target.step} from {target.checkpoint}", err=True)
    return [sys.executable, "-m", "balance_lab.train", "--config-path", str(config_dir), "--config-name", "config",
            f"++resume_run_id={target.run_id}", f"++resume_ckpt='{target.checkpoint}'",
            f"++checkpoint.dir='{target.checkpoint.parent}'", f"++logger.tracking_uri='{uri}'"]


@app.command(context_settings=_PASSTHROUGH)
def sweep(
    name: str = typer.Argument(..., help="A sweep file of sweeps/: paper_main, update_rate, update_rule, bias_type, "
                                         "aux_alpha, lbl_scope, gating, methods."),
    overrides: Optional[List[str]] = OverridesArg,
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, help="Runs at a time on this machine (Hydra's joblib launcher)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the expanded grid and exit; nothing is trained or recorded."),
    rerun: bool = typer.Option(False, "--rerun", help="Train again the runs that already FINISHED with the same config."),
    tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", help="MLflow store (default: MLFLOW_TRACKING_URI, "
                                               "else sqlite:///mlflow.db)."),
) -> None:
    """Run an ablation grid (method x rate x rule x ... x seed) as one MLflow sweep.

    The grid is the sweep file's hydra.sweeper.params plus any sweeping override given here
    (key=a,b,c); other overrides apply to every run. One experiment per sweep name, one parent
    run per invocation, every run nested under it. Runs that already FINISHED with the same
    config are skipped (--rerun trains them again) and runs stopped by Ctrl-C or SIGTERM continue
    from their checkpoints, so an interrupted sweep is continued by running the same command again.
    Examples:

        balance-lab sweep paper_main --dry-run
        balance-lab sweep update_rate model=small seeds=[0,1] --jobs 2
        balance-lab sweep paper_main trainer=gpu hydra/launcher=submitit_slurm \\
            hydra.launcher.partition=gpu
        balance-lab sweep gating hydra/launcher=submitit_local

    Exit status: 0 when every run finished, 1 when any failed, 2 on bad input.
    """
    import shlex
    from datetime import datetime
    from pathlib import Path

    from balance_lab import tracking
    from balance_lab.console import console as make_console
    from balance_lab.errors import ConfigError
    from balance_lab.sweeping.grid import expand

    overrides = list(overrides or [])
    try:
        grid = expand(name, [o for o in overrides if not o.startswith(("hydra/", "hydra."))])
    except ConfigError as exc:
        _fail(str(exc))
    uri = tracking.resolve_tracking_uri(tracking_uri)
    from balance_lab.sweeping.display import grid_table, print_outcome
    from balance_lab.validation import check_tracking_uri

    try:
        check_tracking_uri(uri)
    except ConfigError as exc:
        _fail(str(exc))

    if dry_run:
        _mark_finished(grid, uri, create_store=False)
        make_console().print(grid_table(grid, rerun))
        return
    from balance_lab.sweeping.launch import check_launcher, launcher_overrides, run_sweep

    extra = [o for o in overrides if o.startswith(("hydra/", "hydra."))]
    try:
        check_launcher([*launcher_overrides(jobs, extra), *extra])
    except ConfigError as exc:
        _fail(str(exc))
    client = _mark_finished(grid, uri, create_store=True)

    command = "balance-lab sweep " + shlex.join([name, *overrides] + (["--jobs", str(jobs)] if jobs > 1 else []))
    sweep_dir = Path("multirun") / name / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    try:
        parent_id, results, log_path = run_sweep(client, grid, command, jobs, rerun, extra, sweep_dir.resolve(), uri)
    except KeyboardInterrupt:
        typer.echo("sweep interrupted: each running run finishes its step, saves a checkpoint and is marked KILLED; "
                   f"run the same command again to continue them ({command})", err=True)
        raise typer.Exit(130)
    if print_outcome(grid, results, parent_id, log_path):
        raise typer.Exit(1)


def _mark_finished(grid, uri: str, create_store: bool):
    """Look up, for each point, a FINISHED run with the same config (what a re-run skips)."""
    from balance_lab import tracking

    db = tracking.sqlite_file(uri)
    if db is not None and not create_store and not db.exists():
        return None  # a dry run never creates a store
    client = tracking.client(uri)
    for point in grid.points:
        run = tracking.find_finished(client, grid.name, point.config_hash)
        point.finished_run_id = run.info.run_id if run else None
    return client


@app.command()
def runs(
    stale: bool = typer.Option(False, "--stale", help="Find RUNNING runs whose process is gone (kill -9, OOM, lost node) "
                               "and mark them KILLED, so they can be resumed."),
    older_than: float = typer.Option(10.0, "--older-than", min=0, help="With --stale, for runs owned by another host: "
                                     "minutes without a heartbeat that count as gone."),
    dry_run: bool = typer.Option(False, "--dry-run", help="With --stale, list what would be marked; change nothing."),
    sync: Optional[Path] = typer.Option(None, "--sync", help="Send what a run kept while its store was away "
                                        "(metrics, tags, artifacts: the unsent-RUN.jsonl file it named)."),
    limit: int = typer.Option(20, "--limit", "-n", min=1, help="How many of the latest runs to list."),
    tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", help="MLflow store (default: MLFLOW_TRACKING_URI, "
                                               "else sqlite:///mlflow.db)."),
) -> None:
    """List the latest runs; find and mark the ones whose process died.

    A run killed with `kill -9` (or by the OOM killer, or on a node that vanished) stays RUNNING
    in MLflow: nothing was left to mark it. `--stale` finds them (the owning process is gone on
    this host, or no heartbeat for `--older-than` minutes elsewhere) and marks them KILLED with
    the evidence; `balance-lab run --resume RUN_ID` then continues each from its last checkpoint.
    Examples:

        balance-lab runs
        balance-lab runs --stale --dry-run
        balance-lab runs --sync outputs/2026-11-25/10-00-00/unsent-3f2a.jsonl
    """
    from datetime import datetime

    from rich.table import Table

    from balance_lab import tracking
    from balance_lab.console import console as make_console

    uri = _existing_store(tracking_uri)
    from balance_lab import runs as listing

    client, console = tracking.client(uri), make_console()
    if sync is not None:
        from balance_lab.outbox import replay

        if not sync.is_file():
            _fail(f"--sync {sync}: no such file")
        sent, run_ids = replay(client, sync)
        console.print(f"sent {sent} records to {len(run_ids)} run(s) in {uri}")
        return
    if stale:
        found = listing.stale_runs(client, older_than)
        for row in found:
            if not dry_run:
                listing.mark_killed(client, row)
            console.print(f"{'would mark' if dry_run else 'marked'} KILLED: {row.name} ({row.run_id}, {row.experiment}): "
                          f"{row.note}; {row.next_step}")
        console.print(f"{len(found)} stale run(s)" + (" (nothing changed: --dry-run)" if dry_run and found else ""))
        return
    table = Table(header_style="bold")
    for column in ("run", "experiment", "status", "started", "val ppl", "run id", "note"):
        table.add_column(column, justify="right" if column == "val ppl" else "left")
    for row in listing.latest_runs(client, limit):
        style = {"FAILED": "red", "KILLED": "yellow", "RUNNING": "cyan"}.get(row.status, "")
        table.add_row(row.name, row.experiment, f"[{style}]{row.status}[/]" if style else row.status,
                      datetime.fromtimestamp(row.started).strftime("%Y-%m-%d %H:%M"),
                      f"{row.val_ppl:.3f}" if row.val_ppl is not None else "-", row.run_id, row.note[:80])
    console.print(table)


REPORT_FORMATS = ("table", "md", "csv", "html")


@app.command()
def report(
    sweeps: Optional[List[str]] = typer.Argument(None, help="Sweep (experiment) names; default: every experiment in the store.",
                                                 show_default=False),
    output_format: str = typer.Option("table", "--format", "-f", help="What to print: table (rich), md, csv (summary) or html."),
    out: Path = typer.Option(Path("reports"), "--out", "-o", help="Reports go to `OUT/SWEEP/`."),
    metric: Optional[List[str]] = typer.Option(None, "--metric", "-m", help="Extra metric column, e.g. val/loss or "
                                               "train/aux_loss:min (':min'/':max' marks the best). Repeatable."),
    run_filter: str = typer.Option("", "--run-filter", help="MLflow filter on the runs, e.g. \"params.model.name = 'tiny'\"."),
    baseline: Optional[str] = typer.Option(None, "--baseline", help="Configuration the others are compared with, seed by "
                                           "seed (a label or a unique part of one); default: the first."),
    write: bool = typer.Option(True, "--write/--no-write", help="Write `OUT/SWEEP/` and log the plots to the sweep's parent run."),
    tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", help="MLflow store (default: MLFLOW_TRACKING_URI, "
                                               "else sqlite:///mlflow.db)."),
) -> None:
    """Compare the configurations of a sweep: tables, paired differences, the paper's numbers, plots.

    One row per configuration (runs that differ only in the seed), mean ± std over seeds, the
    best value per column in bold; only FINISHED runs are averaged, the others are listed below.
    Writes `OUT/SWEEP/report.md`, `report.html` (self-contained), `summary.csv`, `runs.csv` and
    `plots/*.png`, and logs the plots to the sweep's latest parent run. Examples:

        balance-lab report paper_main
        balance-lab report update_rate --format md --metric val/loss:min
        balance-lab report lbl_scope --baseline micro \\
            --run-filter "params.model.name = 'small'"
    """
    from balance_lab.console import console as make_console
    from balance_lab.errors import ConfigError

    if output_format not in REPORT_FORMATS:
        _fail(f"unknown --format {output_format!r}; choose one of {', '.join(REPORT_FORMATS)}")
    uri = _existing_store(tracking_uri)
    from balance_lab.report import make, render

    names = list(sweeps or []) or _experiments_with_runs(uri)
    if not names:
        _fail(f"the store {uri} holds no run yet")
    console = make_console()
    for name in names:
        try:
            result = make.make_report(uri, name, list(metric or []), run_filter, baseline)
        except ConfigError as exc:
            _fail(str(exc))
        if write:
            make.write_report(result, out)
        if output_format == "table":
            render.terminal(result, console)
            if write:
                console.print(f"[dim]wrote {result.files['md']} (+ report.html, summary.csv, runs.csv, plots/)[/]")
        elif output_format == "csv":
            typer.echo(result.summary.to_csv(index=False), nl=False)
        elif output_format == "md":
            typer.echo(render.markdown(result), nl=False)
        else:
            typer.echo(render.html(render.markdown(result), out / name, f"balance-lab report: {name}"), nl=False)


@app.command()
def ui(
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to serve on; 0.0.0.0 exposes the store to the network."),
    port: int = typer.Option(5000, "--port", "-p", min=0, max=65535, help="Port; 0 picks a free one."),
    tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", help="MLflow store (default: MLFLOW_TRACKING_URI, "
                                               "else sqlite:///mlflow.db)."),
) -> None:
    """Browse every run, sweep, metric and plot in the MLflow UI (the real `mlflow server`).

    Serves the same store `run`, `sweep` and `report` use, artifacts included (plots, expert
    loads, configs). Sweep children are nested under their parent run; select runs and
    *Compare* for the parallel-coordinates view of the swept params. Ctrl-C stops the server.
    Examples:

        balance-lab ui
        balance-lab ui --port 0 --tracking-uri sqlite:///runs/mlflow.db
    """
    import tempfile

    from balance_lab import ui as server
    from balance_lab.console import console as make_console
    from balance_lab.errors import ConfigError

    uri = _existing_store(tracking_uri)
    try:
        port = server.choose_port(host, port)
    except ConfigError as exc:
        _fail(str(exc))
    console = make_console()
    if host not in server.LOOPBACK:
        console.print(f"[yellow]warning: serving on {host}: anyone who can reach this machine on port {port} can read "
                      "and change every run (no authentication)[/]")
    log_path = Path(tempfile.mkdtemp(prefix="balance-lab-ui-")) / "mlflow-server.log"
    server.stop_on_sigterm()  # `kill` stops the server too, as Ctrl-C does
    process = server.start(uri, host, port, log_path)
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    try:
        with console.status(f"starting the MLflow server on {url} ..."):
            server.wait_ready(process, url, log_path)
        _print_ui_summary(console, url, uri, server.experiments(uri), log_path)
        process.wait()
        _fail(f"the MLflow server stopped on its own (status {process.returncode}); log: {log_path}", code=1)
    except KeyboardInterrupt:
        console.print("stopping the MLflow server ...")
    except RuntimeError as exc:
        _fail(str(exc), code=1)
    finally:
        server.stop(process)
    console.print("stopped")


def _print_ui_summary(console, url: str, uri: str, experiments: list[tuple[str, int, int]], log_path: Path) -> None:
    from rich.table import Table

    console.print(f"MLflow UI: [bold link={url}]{url}[/]  (store {uri}; server log {log_path})")
    table = Table(header_style="bold")
    for column in ("experiment", "runs", "sweep invocations"):
        table.add_column(column, justify="left" if column == "experiment" else "right")
    for name, runs, parents in experiments:
        table.add_row(name, str(runs), str(parents))
    console.print(table if experiments else "the store holds no run yet")
    console.print("Ctrl-C to stop", style="dim")


def _experiments_with_runs(uri: str) -> list[str]:
    from mlflow.tracking import MlflowClient

    from balance_lab import tracking

    tracking.quiet_mlflow_logs()
    client = MlflowClient(uri)
    return [e.name for e in client.search_experiments() if client.search_runs([e.experiment_id], max_results=1)]


@configs_app.command("show", context_settings=_PASSTHROUGH)
def configs_show(overrides: Optional[List[str]] = OverridesArg) -> None:
    """Print the composed config, the model's total and active parameter counts and its training
    FLOPs per token (6 x active matmul parameters + attention), computed on the meta device.

        balance-lab configs show model=paper_1b
        balance-lab configs show experiment=paper_3b
    """
    from omegaconf import OmegaConf
    from rich.console import Console
    from rich.syntax import Syntax
    from rich.table import Table

    cfg = _compose(list(overrides or []))
    console = Console()
    console.print(Syntax(OmegaConf.to_yaml(cfg, resolve=True), "yaml", background_color="default"))

    from balance_lab.model import ModelArgs, count_params, train_flops_per_token

    try:
        args = ModelArgs.from_config(cfg.model)
    except (ValueError, TypeError) as exc:
        _fail(str(exc))
    counts = count_params(args)  # on the meta device: paper_3b costs no memory
    table = Table(title=f"model={cfg.model.name}", header_style="bold")
    for column in ("parameters", "count"):
        table.add_column(column, justify="right" if column == "count" else "left")
    table.add_row("total", f"{counts.total:,}")
    table.add_row("active per token", f"{counts.active:,}")
    table.add_row("embedding (tied)" if args.tie_embeddings else "embedding", f"{counts.embedding:,}")
    table.add_row("MoE layers x routed experts", f"{args.n_moe_layers} x {args.n_routed_experts} (top-{args.top_k}, {args.n_shared_experts} shared)")
    table.add_row("training FLOPs per token", f"{train_flops_per_token(args, counts):,}")
    console.print(table)


@configs_app.command("list")
def configs_list() -> None:
    """List every config group and its options."""
    from rich.console import Console
    from rich.table import Table

    from balance_lab.paths import conf_dir

    table = Table(header_style="bold")
    table.add_column("group")
    table.add_column("options")
    for group in sorted(p for p in conf_dir().iterdir() if p.is_dir()):
        table.add_row(group.name, ", ".join(sorted(f.stem for f in group.glob("*.yaml"))))
    Console().print(table)


@data_app.command("tokenize")
def data_tokenize(
    out: Path = typer.Argument(..., help="Folder to write tokenizer.json, meta.json and <domain>.<split>.bin to."),
    source: str = typer.Option("builtin", "--source", help="builtin (this Python's corpus) or text_dir (--path)."),
    path: Optional[Path] = typer.Option(None, "--path", help="With --source text_dir: one subfolder of text files per domain."),
    vocab_size: int = typer.Option(32000, "--vocab-size", min=257, help="BPE vocabulary (EOT included)."),
    tokenizer: Optional[Path] = typer.Option(None, "--tokenizer", help="Reuse this tokenizer.json instead of training one."),
    retrain: bool = typer.Option(False, "--retrain", help="Train the tokenizer again even if OUT/tokenizer.json has "
                                 "the same vocabulary size (by default it is reused: the cache)."),
    max_documents: Optional[int] = typer.Option(None, "--max-documents", min=1, help="At most N documents per domain "
                                                "(a quick look before the real thing)."),
    val_fraction: float = typer.Option(0.05, "--val-fraction", min=0.0, max=1.0, help="Held-out fraction of documents "
                                       "(chosen by a hash of the document id, as for the built-in data)."),
) -> None:
    """Train a byte-level BPE tokenizer locally and write token files for `data=tokens`.

    Nothing is downloaded: the tokenizer is trained (Hugging Face `tokenizers`) on the training
    documents of the corpus, then every domain's train and validation documents are written as
    flat token arrays (uint16 up to 65,536 tokens), documents separated by an end-of-text token.
    OUT/tokenizer.json is the cache: running again into OUT with the same vocabulary size reuses
    it (`--retrain` trains anew).
    Examples:

        balance-lab data tokenize data/tok32k
        balance-lab data tokenize data/mine --source text_dir --path ~/corpus --vocab-size 50000
        balance-lab run data=tokens data.path=data/tok32k model=base
    """
    import time

    from balance_lab.console import console as make_console
    from balance_lab.data import builtin
    from balance_lab.data.sources import corpus_documents
    from balance_lab.data.tokens import tokenize_corpus
    from balance_lab.errors import ConfigError

    if tokenizer is not None and not tokenizer.is_file():
        _fail(f"--tokenizer {tokenizer}: no such file")
    try:
        makers = corpus_documents(source, path, max_documents)
    except ConfigError as exc:
        _fail(str(exc))
    if retrain:
        (out / "tokenizer.json").unlink(missing_ok=True)
    console = make_console()
    started = time.perf_counter()
    reuse = tokenizer is not None or (out / "tokenizer.json").is_file()
    with console.status("loading the tokenizer (a different --vocab-size trains a new one) ..." if reuse
                        else "training the BPE tokenizer on the training documents ...") as status:
        def progress(domain: str, tokens: dict[str, int]) -> None:
            status.update(f"tokenising: {domain} done ({tokens['train']:,} train / {tokens['val']:,} val tokens)")

        result = tokenize_corpus(makers, lambda doc_id: builtin.is_validation(doc_id, val_fraction), out,
                                 vocab_size, tokenizer, progress)
    from rich.table import Table

    table = Table(title=f"{out} (vocabulary {result.vocab_size:,}, {time.perf_counter() - started:.0f} s)", header_style="bold")
    for column in ("domain", "train tokens", "val tokens"):
        table.add_column(column, justify="left" if column == "domain" else "right")
    for domain, splits in result.tokens.items():
        table.add_row(domain, f"{splits['train']:,}", f"{splits['val']:,}")
    console.print(table)
    console.print(f"use it: balance-lab run data=tokens data.path={out} model.vocab_size={result.vocab_size}")


if __name__ == "__main__":
    app()
