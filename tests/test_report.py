"""`balance-lab report` on a real small sweep in a temporary store (plus one run that fails)."""

import re
import statistics
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from tests.helpers.groups import SWEPT_GROUP
from tests.helpers.runners import cli_in_this_process

pytestmark = [pytest.mark.slow, SWEPT_GROUP]  # the fixture trains a 4-run sweep and a failing run (~1 min)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def finished_children(uri):
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("paper_main")
    runs = client.search_runs([experiment.experiment_id], "attributes.status = 'FINISHED'")
    return [r for r in runs if r.data.tags.get("balance_lab.role") != "sweep_parent"]


def test_summary_csv_holds_mean_std_and_n_of_the_runs_metrics(swept):
    uri, folder = swept.uri, swept.reports
    summary = pd.read_csv(folder / "summary.csv").set_index("label")
    runs = finished_children(uri)
    assert len(runs) == 4
    for method, label in (("aux_loss", "aux_loss-a1e-3-micro"), ("loss_free", "loss_free-u1e-2-sign-add")):
        mine = [r for r in runs if r.data.params["balance.name"] == method]
        assert summary.at[label, "n_seeds"] == 2
        for key in ("val/ppl", "val/maxvio_global", "train/maxvio_batch_mean", "train/tokens_per_sec"):
            values = [r.data.metrics[key] for r in mine]
            assert summary.at[label, f"{key} mean"] == pytest.approx(statistics.mean(values), rel=1e-9), key
            assert summary.at[label, f"{key} std"] == pytest.approx(statistics.stdev(values), rel=1e-9), key
            assert summary.at[label, f"{key} n"] == 2


def test_failed_runs_are_listed_not_averaged(swept):
    folder, stdout = swept.reports, swept.report_stdout
    runs = pd.read_csv(folder / "runs.csv")
    assert list(runs["status"]).count("FINISHED") == 4
    failed = runs[runs["status"] == "FAILED"]
    assert len(failed) == 1 and failed.iloc[0]["run_name"] == "loss_free-u1e-2-sign-add-tiny-s7"
    assert "RuntimeError" in failed.iloc[0]["status_reason"]
    assert "7" not in pd.read_csv(folder / "summary.csv")["seeds"].astype(str).str.cat()
    markdown = (folder / "report.md").read_text()
    assert "## Runs not counted" in markdown and "loss_free-u1e-2-sign-add-tiny-s7" in markdown
    assert "not counted (did not finish)" in stdout


def test_every_plot_is_a_png_logged_to_the_parent_run(swept):
    uri, folder = swept.uri, swept.reports
    names = {"ppl_vs_maxvio", "maxvio_batch_steps", "expert_loads", "straggler_steps", "domain_specialisation"}
    for name in names:
        data = (folder / "plots" / f"{name}.png").read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 5000, name
        from PIL import Image

        with Image.open(folder / "plots" / f"{name}.png") as image:
            image.verify()
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("paper_main")
    (parent,) = client.search_runs([experiment.experiment_id], "tags.`balance_lab.role` = 'sweep_parent'")
    logged = {Path(f.path).stem for f in client.list_artifacts(parent.info.run_id, "plots")}
    assert logged == names | {"load_history"}  # a folder: a heatmap per configuration
    per_configuration = {Path(f.path).name for f in client.list_artifacts(parent.info.run_id, "plots/load_history")}
    assert per_configuration == {p.name for p in (folder / "plots" / "load_history").glob("*.png")}
    assert len(per_configuration) == 2
    assert {Path(f.path).name for f in client.list_artifacts(parent.info.run_id, "report")} >= {
        "report.md",
        "summary.csv",
    }


def test_report_md_links_only_files_that_exist_and_shows_the_paper_and_the_command(swept):
    folder = swept.reports
    markdown = (folder / "report.md").read_text()
    links = re.findall(r"\]\(([^)]+)\)", markdown)
    assert len(links) >= 10  # 7 plots (2 of them per configuration) + summary.csv, runs.csv, report.html
    for link in links:
        assert (folder / link).is_file(), link
    assert "balance-lab sweep paper_main 'seeds=[0,1]'" in markdown  # shell-quoted, as it can be pasted
    assert "Beside the published numbers" in markdown and "9.56" in markdown
    assert re.search(r"perplexity: (the ordering matches the paper|\d of \d pairs the paper orders match it)", markdown)
    html = (folder / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 7 and "<table>" in html


def test_paired_differences_match_the_runs(swept):
    uri, folder = swept.uri, swept.reports
    runs = finished_children(uri)
    by = {(r.data.params["balance.name"], r.data.params["seed"]): r.data.metrics["val/ppl"] for r in runs}
    expected = statistics.mean(by[("loss_free", s)] - by[("aux_loss", s)] for s in ("0", "1"))
    markdown = (folder / "report.md").read_text()
    row = next(line for line in markdown.splitlines() if line.startswith("| `loss_free") and "| val/ppl |" in line)
    assert f"{expected:+.4f}" in row


def test_perplexity_at_every_validation_is_paired_step_by_step(swept):
    uri, client = swept.uri, MlflowClient(swept.uri)
    history = {
        (r.data.params["balance.name"], r.data.params["seed"]): {
            m.step: m.value for m in client.get_metric_history(r.info.run_id, "val/ppl")
        }
        for r in finished_children(uri)
    }
    steps = sorted(history[("loss_free", "0")])
    assert len(steps) >= 2  # SHORT_RUN validates every 3 of its 6 steps
    markdown = (swept.reports / "report.md").read_text()
    section = markdown.split("## Perplexity during training")[1].split("\n## ")[0]
    paired = next(line for line in section.splitlines()[::-1] if line.startswith("| `loss_free"))
    for step, cell in zip(steps, paired.split("|")[2:]):
        expected = statistics.mean(history[("loss_free", s)][step] - history[("aux_loss", s)][step] for s in "01")
        assert cell.strip().startswith(f"{expected:+.3f}"), (step, cell)


def test_formats_and_bad_input(swept):
    uri, folder = swept.uri, swept.reports
    csv = cli_in_this_process("report", "paper_main", "--format", "csv", "--no-write", "--tracking-uri", uri)
    assert csv.returncode == 0 and csv.stdout.splitlines()[0].startswith("label,n_seeds,seeds,reference,val/ppl mean")
    md = cli_in_this_process(
        "report", "paper_main", "--format", "md", "--no-write", "--tracking-uri", uri, "--metric", "val/loss:min"
    )
    assert md.returncode == 0 and md.stdout.startswith("# Sweep `paper_main`") and "val/loss" in md.stdout
    bad = cli_in_this_process("report", "paper_mian", "--tracking-uri", uri)
    assert bad.returncode == 2
    assert bad.stderr.strip() == f"error: no experiment named 'paper_mian' in {uri}; choose one of paper_main"
    bad = cli_in_this_process("report", "paper_main", "--format", "pdf", "--tracking-uri", uri)
    assert bad.returncode == 2 and "choose one of table, md, csv, html" in bad.stderr
    bad = cli_in_this_process("report", "paper_main", "--baseline", "nothing-like-it", "--tracking-uri", uri)
    assert bad.returncode == 2 and "aux_loss-a1e-3-micro" in bad.stderr
    missing = cli_in_this_process("report", "--tracking-uri", f"sqlite:///{folder / 'absent.db'}")
    assert missing.returncode == 2 and "no MLflow store" in missing.stderr
    assert not (folder / "absent.db").exists()
    # every argument is checked before the first report is written: one line, exit 2, nothing written
    out = swept.root / "not-written"
    for args, fragment in [
        (["paper_main", "paper_mian"], "no experiment named 'paper_mian'"),
        (["paper_main", "--metric", "val/lsos"], "--metric val/lsos: no finished run of paper_main recorded it"),
        (["paper_main", "--metric", "val/loss:best"], "after ':' comes min or max"),
        (["paper_main", "--run-filter", "params.model.name = tiny"], "bad --run-filter"),
    ]:
        bad = cli_in_this_process("report", *args, "--out", str(out), "--tracking-uri", uri)
        assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and fragment in bad.stderr, (args, bad.stderr)
        assert not out.exists(), args
    a_file = swept.root / "a-file"
    a_file.write_text("")
    bad = cli_in_this_process("report", "paper_main", "--out", str(a_file), "--tracking-uri", uri)
    assert bad.returncode == 2 and "a file; reports go to OUT/SWEEP/" in bad.stderr
