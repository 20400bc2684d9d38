"""Data beyond the built-in corpus: a folder of the user's text (data=text_dir), and BPE token files
written by `balance-lab data tokenize` and memory-mapped by data=tokens."""

import json
import sysconfig
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from tests.helpers.runners import cli_in_new_process, cli_in_this_process, run_in_this_process
from tests.helpers.session import corpus_build_log
from tests.helpers.short import short_run
from tests.helpers.stores import all_runs

SHORT = [*short_run(steps=4, val_every=2, val_sequences=6), "model.seq_len=64", "trainer.enable_progress_bar=false"]


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory) -> Path:
    """Two domains of real text: 120 standard-library modules and 120 documents of their comments."""
    root = tmp_path_factory.mktemp("corpus")
    sources = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))[:120]
    for domain in ("code", "comments"):
        (root / domain).mkdir()
    for i, path in enumerate(sources):
        text = path.read_text("utf-8", errors="replace")
        (root / "code" / f"{path.stem}.py").write_text(text)
        comments = "\n".join(line.strip("# ") for line in text.splitlines() if line.lstrip().startswith("#"))
        (root / "comments" / f"{i}.txt").write_text(comments + "\n" + text[:2000])
    return root


@pytest.mark.slow
def test_a_run_on_a_text_dir_knows_its_domains(store, corpus_dir, tmp_path):
    result = run_in_this_process("data=text_dir", f"data.path={corpus_dir}", "model.vocab_size=256", *SHORT)
    assert result.returncode == 0, result.stderr[-3000:]
    run = all_runs(store)[0]
    assert run.info.status == "FINISHED" and run.data.params["data.source"] == "text_dir"
    assert {"val/top_expert_freq/code", "val/top_expert_freq/comments"} <= set(run.data.metrics)
    local = MlflowClient(store).download_artifacts(run.info.run_id, "loads/val_loads.json", str(tmp_path))
    assert set(json.load(open(local))["domains"]) == {"code", "comments"}


@pytest.mark.slow
def test_tokenize_writes_bpe_token_files_that_a_run_trains_on(store, corpus_dir, tmp_path):
    out = tmp_path / "tok"
    result = cli_in_this_process(
        "data", "tokenize", str(out), "--source", "text_dir", "--path", str(corpus_dir), "--vocab-size", "600"
    )  # writes files, never execs: no interpreter to start
    assert result.returncode == 0, result.stderr[-3000:]
    meta = json.loads((out / "meta.json").read_text())
    assert meta["vocab_size"] == 600 and meta["dtype"] == "uint16" and set(meta["domains"]) == {"code", "comments"}

    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(out / "tokenizer.json"))
    text = (corpus_dir / "code" / sorted(p.name for p in (corpus_dir / "code").iterdir())[0]).read_text()[:3000]
    ids = tokenizer.encode(text).ids
    assert tokenizer.decode(ids) == text and len(ids) < len(text.encode()) / 1.5  # BPE compresses, losslessly
    for domain, splits in meta["domains"].items():
        for split, info in ((s, splits[s]) for s in ("train", "val")):
            tokens = np.fromfile(out / f"{domain}.{split}.bin", dtype=np.uint16)
            assert len(tokens) == info["tokens"] > 0 and int(tokens.max()) < 600
            assert int((tokens == meta["eot"]).sum()) == info["documents"]  # one EOT after every document

    result = run_in_this_process("data=tokens", f"data.path={out}", "model.vocab_size=600", *SHORT)
    assert result.returncode == 0, result.stderr[-3000:]
    run = all_runs(store)[0]
    assert run.info.status == "FINISHED" and run.data.params["data.source"] == "tokens"
    # bits per byte accounts for BPE tokens being several bytes long
    assert run.data.metrics["val/bpb"] < run.data.metrics["val/loss"] / np.log(2) / 1.5

    too_small = run_in_this_process("data=tokens", f"data.path={out}", "model.vocab_size=256", *SHORT)
    assert too_small.returncode == 2 and "model.vocab_size=256" in too_small.stderr and "600 tokens" in too_small.stderr


def test_tokens_without_token_files_is_a_one_line_error(store, tmp_path):
    result = cli_in_new_process("run", "data=tokens", f"data.path={tmp_path}")
    assert result.returncode == 2
    assert "no token files there" in result.stderr and "balance-lab data tokenize" in result.stderr
    assert all_runs(store) == []


def test_the_builtin_corpus_as_bpe_is_trained_once_cached_and_reused(store, corpus_cache, tmp_path_factory):
    """The default data: the session's fixture built the 8K BPE as a first run does; a run reuses it."""
    import math

    built = corpus_build_log(tmp_path_factory).read_text()
    if built:  # this session built it (not an earlier one, through BALANCE_LAB_CACHE)
        assert "training a 8192-token BPE on the built-in corpus" in built
    (folder,) = corpus_cache.glob("builtin-*-bpe8192")
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["vocab_size"] == 8192 and set(meta["domains"]) == {"code", "prose", "math"}
    built = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    result = run_in_this_process(*SHORT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "training a" not in result.stderr  # the cache is reused...
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == built  # ...not rebuilt
    (run,) = all_runs(store)
    assert run.info.status == "FINISHED" and run.data.params["data.tokenizer"] == "bpe"
    assert run.data.params["data.vocab_size"] == "8192" and run.data.params["model.vocab_size"] == "8192"
    val = [meta["domains"][d]["val"] for d in ("code", "prose", "math")]
    bytes_per_token = sum(v["bytes"] for v in val) / sum(v["tokens"] for v in val)
    assert bytes_per_token > 1.5  # BPE tokens, not bytes
    bpb = run.data.metrics["val/loss"] / math.log(2) / bytes_per_token
    assert run.data.metrics["val/bpb"] == pytest.approx(bpb)


def test_the_builtin_sources_code_default_tokenizer_is_the_yamls():
    from omegaconf import OmegaConf

    from balance_lab.config.compose import compose_config
    from balance_lab.data.sources import source_for
    from balance_lab.data.sources.builtin import DEFAULT_TOKENIZER, BuiltinBPE

    assert compose_config([]).data.tokenizer == DEFAULT_TOKENIZER
    data = OmegaConf.create(
        {k: v for k, v in OmegaConf.to_container(compose_config([]).data, resolve=True).items() if k != "tokenizer"}
    )
    assert type(source_for(data)) is BuiltinBPE  # a data config without the key reads as the YAML's default
