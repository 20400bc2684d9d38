"""data=hf and `data tokenize --source hf`: corpora read with Hugging Face `datasets` from small parquet,
jsonl(.gz/.zst), arrow and save_to_disk files built here; no test touches the network."""

import gzip
import json
import random
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.runners import cli_in_this_process, run_in_this_process
from tests.helpers.stores import all_runs

WORDS = (
    "the of and to in a is that for it as was with be by on not he this are or his from at which but have an "
    "they you were her she there one all would their we him been has when who will more no if out so said"
).split()
SOURCES = ("web", "forum", "news")


def _text(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 120))) + "."


def _rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    return [
        {"text": _text(rng), "source": SOURCES[i % 3], "meta": {"lang": rng.choice(["en", "fr"])}, "id": i}
        for i in range(n)
    ]


def _code_rows(n: int) -> list[dict]:
    return [
        {"content": f"def f{i}(x):\n    return x * {i} + {i % 7}\n" * (1 + i % 5), "repo": f"r{i % 4}"}
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def corpora(tmp_path_factory) -> Path:
    """web-like parquet shards, a code jsonl.gz and jsonl.zst, a folder with its own validation split,
    a save_to_disk folder and two files that are not datasets."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import zstandard

    root = tmp_path_factory.mktemp("hf")
    rows = _rows(600, 0)
    (root / "web").mkdir()
    pq.write_table(pa.Table.from_pylist(rows[:300]), root / "web" / "shard-0.parquet")
    pq.write_table(pa.Table.from_pylist(rows[300:]), root / "web" / "shard-1.parquet")
    code = "".join(json.dumps(r) + "\n" for r in _code_rows(200))
    with gzip.open(root / "code.jsonl.gz", "wt") as f:
        f.write(code)
    (root / "code.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(code.encode()))
    (root / "splits").mkdir()
    pq.write_table(pa.Table.from_pylist(_rows(200, 1)), root / "splits" / "train-00000.parquet")
    pq.write_table(pa.Table.from_pylist(_rows(40, 2)), root / "splits" / "validation-00000.parquet")
    (root / "not-a-dataset.parquet").write_text("this is not parquet\n")
    (root / "picture.png").write_bytes(b"\x89PNG\r\n")
    return root


def _tokenize(out: Path, *args: str):
    return cli_in_this_process("data", "tokenize", str(out), "--source", "hf", "--vocab-size", "300", *args)


def _documents(out: Path, domain: str, split: str) -> list[str]:
    """The documents of a token file, decoded (split at EOT)."""
    from tokenizers import Tokenizer

    meta = json.loads((out / "meta.json").read_text())
    tokenizer = Tokenizer.from_file(str(out / "tokenizer.json"))
    ids = np.fromfile(out / f"{meta['domains'][domain].get('file', domain)}.{split}.bin", dtype=meta["dtype"])
    ends = np.flatnonzero(ids == meta["eot"])
    starts = np.concatenate([[0], ends[:-1] + 1])
    return [tokenizer.decode(ids[s:e].tolist()) for s, e in zip(starts, ends)]


@pytest.fixture(scope="module")
def by_source(corpora, tmp_path_factory) -> Path:
    """The web shards with the `source` column as domains, two of its three values, weighted."""
    out = tmp_path_factory.mktemp("tok") / "by_source"
    result = _tokenize(
        out, "--path", str(corpora / "web" / "*.parquet"), "--domain-field", "source", "data.domains={web: 3, news: 1}"
    )
    assert result.returncode == 0, result.stderr
    return out


def test_a_column_names_the_domains_and_the_weights_select_its_values(by_source):
    rows = _rows(600, 0)
    meta = json.loads((by_source / "meta.json").read_text())
    assert list(meta["domains"]) == ["web", "news"]  # forum not asked for: not written
    for domain in ("web", "news"):
        info = meta["domains"][domain]
        assert info["train"]["documents"] + info["val"]["documents"] == sum(r["source"] == domain for r in rows)
        assert info["val"]["documents"] > 0


def test_the_held_out_split_is_disjoint_from_training_and_follows_the_text(by_source):
    from balance_lab.data.hf import is_held_out

    web = [r["text"] for r in _rows(600, 0) if r["source"] == "web"]
    train, val = _documents(by_source, "web", "train"), _documents(by_source, "web", "val")
    assert sorted(train + val) == sorted(web)  # every document once, decoded back exactly
    assert not set(train) & set(val)
    assert val == [t for t in web if is_held_out(t, 0.05)]  # in the dataset's order
    meta = json.loads((by_source / "meta.json").read_text())
    assert meta["domains"]["web"]["val"]["bytes"] == sum(len(t.encode()) + 1 for t in val)  # bits per byte: text bytes


def test_the_datasets_own_validation_split_is_used_when_it_has_one(corpora, tmp_path):
    out = tmp_path / "splits"
    assert _tokenize(out, "--path", str(corpora / "splits")).returncode == 0
    assert _documents(out, "all", "val") == [r["text"] for r in _rows(40, 2)]
    assert _documents(out, "all", "train") == [r["text"] for r in _rows(200, 1)]


def test_streamed_in_two_processes_the_token_files_are_the_same_bytes(corpora, by_source, tmp_path):
    out = tmp_path / "streamed"
    result = _tokenize(
        out,
        "--path",
        str(corpora / "web" / "*.parquet"),
        "--domain-field",
        "source",
        "data.domains={web: 3, news: 1}",
        "--tokenizer",
        str(by_source / "tokenizer.json"),
        "--streaming",
        "--workers",
        "2",
    )
    assert result.returncode == 0, result.stderr
    for name in sorted(p.name for p in by_source.iterdir()):
        assert (out / name).read_bytes() == (by_source / name).read_bytes(), name


def test_one_dataset_per_domain_mixes_formats_fields_and_compression(corpora, tmp_path):
    out = tmp_path / "mix"
    mix = (
        f"data.domains={{web: {{path: '{corpora / 'web'}', weight: 0.6}}, code: {{path: "
        f"'{corpora / 'code.jsonl.zst'}', text_field: content, weight: 0.4}}}}"
    )
    assert _tokenize(out, mix).returncode == 0
    code = _documents(out, "code", "train") + _documents(out, "code", "val")
    assert sorted(code) == sorted(r["content"] for r in _code_rows(200))
    gz = tmp_path / "gz"
    assert (
        _tokenize(
            gz,
            "--path",
            str(corpora / "code.jsonl.gz"),
            "--text-field",
            "content",
            "--tokenizer",
            str(out / "tokenizer.json"),
        ).returncode
        == 0
    )
    assert (gz / "all.train.bin").read_bytes() == (out / "code.train.bin").read_bytes()  # .gz reads as .zst did


def test_an_existing_tokenizer_is_honoured_with_its_own_end_of_text(corpora, tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    vocab = {w: i for i, w in enumerate(["<unk>", "<s>", "</s>", *sorted(set(WORDS)), "."])}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.add_special_tokens(["<unk>", "<s>", "</s>"])
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", 1), ("</s>", 2)]
    )
    path = tmp_path / "tokenizer.json"
    tokenizer.save(str(path))

    out = tmp_path / "wordlevel"
    assert _tokenize(out, "--path", str(corpora / "splits"), "--tokenizer", str(path)).returncode == 0
    meta = json.loads((out / "meta.json").read_text())
    assert (meta["eot_token"], meta["eot"], meta["vocab_size"]) == ("</s>", 2, len(vocab))
    ids = np.fromfile(out / "all.val.bin", dtype=meta["dtype"]).tolist()
    expected = []
    for row in _rows(40, 2):  # no <s> from its post-processor: one </s> after each document
        expected += tokenizer.encode(row["text"], add_special_tokens=False).ids + [2]
    assert ids == expected


def _one_line_error(result, *words: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_bad_input_is_one_line_and_writes_nothing(corpora, tmp_path, monkeypatch):
    out = tmp_path / "out"
    web = str(corpora / "web" / "*.parquet")
    _one_line_error(
        _tokenize(out, "--path", web, "--text-field", "body"), "data.text_field='body'", "text, source, meta, id"
    )
    _one_line_error(
        _tokenize(out, "--path", web, "--domain-field", "source", "data.domains={web: 1, blog: 1}"),
        "source='blog'",
        "forum, news, web",
    )
    _one_line_error(_tokenize(out, "--path", str(corpora / "not-a-dataset.parquet")), "not a dataset", "Parquet")
    _one_line_error(
        _tokenize(out, "--path", str(corpora / "picture.png")), "picture.png is not a dataset file", ".parquet"
    )
    _one_line_error(
        _tokenize(out, "--path", str(corpora / "splits"), "data.split=dev"), "data.split='dev'", "train, validation"
    )
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _one_line_error(_tokenize(out, "--path", "someone/some-corpus"), "someone/some-corpus", "HF_HUB_OFFLINE")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there: refused at once
    _one_line_error(_tokenize(out, "--path", "someone/some-corpus"), "cannot be reached")
    assert not out.exists() and not list(tmp_path.glob("*.tmp"))  # nothing half-written


def test_a_vocabulary_larger_than_the_token_dtype_is_refused(corpora, tmp_path):
    from tokenizers import Tokenizer, models

    big = Tokenizer(models.WordLevel({f"w{i}": i for i in range(70_000)} | {"</s>": 70_000}, unk_token="w0"))
    big.save(str(tmp_path / "big.json"))
    out = tmp_path / "out"
    _one_line_error(
        _tokenize(
            out, "--path", str(corpora / "splits"), "--tokenizer", str(tmp_path / "big.json"), "--dtype", "uint16"
        ),
        "--dtype uint16",
        "70,001 tokens",
        "uint32",
    )
    assert not out.exists()
    assert _tokenize(out, "--path", str(corpora / "splits"), "--tokenizer", str(tmp_path / "big.json")).returncode == 0
    assert json.loads((out / "meta.json").read_text())["dtype"] == "uint32"  # auto

    from balance_lab.config.compose import compose_config
    from balance_lab.config.validation import check_data
    from balance_lab.errors import ConfigError

    cfg = compose_config(["data=hf", f"data.path={corpora / 'splits'}", f"data.tokenizer={tmp_path / 'big.json'}"])
    with pytest.raises(ConfigError, match="big.json has 70001 tokens; add model.vocab_size=70001"):
        check_data(cfg)  # a run whose embedding would not cover the tokenizer's ids


def test_run_config_checks_are_one_line(corpora):
    from balance_lab.config.compose import compose_config
    from balance_lab.data.sources import source_for
    from balance_lab.errors import ConfigError

    def data(*overrides):
        return compose_config(["data=hf", *overrides]).data

    cases = [
        ((f"data.path={corpora}/web", "data.domains={web: 1}"), "data.domain_field, which is null"),
        ((f"data.path={corpora}/web", "data.domains={web: 0}", "data.domain_field=source"), "data.domains.web=0"),
        ((f"data.path={corpora}/nowhere/x.parquet",), "no such file or folder"),
        ((f"data.path={corpora}/web/*.json",), "no file matches"),
        ((f"data.path={corpora}/web", "data.tokenizer=nope.json"), "data.tokenizer='nope.json'"),
        (("data.domains={web: {weight: 1}}",), "data.domains.web"),
        ((f"data.domains={{web: {{path: {corpora}/web, wieght: 1}}}}",), "data.domains.web.wieght: unknown key"),
    ]
    for overrides, words in cases:
        with pytest.raises(ConfigError, match=None) as caught:
            source_for(data(*overrides)).check()
        assert words in str(caught.value) and "\n" not in str(caught.value), (overrides, caught.value)


@pytest.mark.slow
def test_a_run_on_a_hf_corpus_tokenises_it_once_before_the_run_and_trains(store, corpora, tmp_path):
    cache = tmp_path / "cache"
    args = [
        "data=hf",
        f"data.path={corpora / 'web'}",
        "data.domain_field=source",
        f"data.cache_dir={cache}",
        "model.vocab_size=300",
        "trainer.max_steps=2",
        "trainer.val_check_interval=2",
        "data.batch_size=4",
        "data.val_sequences=6",
        "model.seq_len=32",
        "trainer.enable_progress_bar=false",
    ]
    result = run_in_this_process(*args)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "tokenised into" in result.stdout
    (folder,) = [p for p in cache.iterdir() if p.is_dir()]
    assert set(json.loads((folder / "meta.json").read_text())["domains"]) == set(SOURCES)
    run = all_runs(store)[0]
    assert run.info.status == "FINISHED" and run.data.params["data.source"] == "hf"
    assert {f"val/top_expert_freq/{s}" for s in SOURCES} <= set(run.data.metrics)

    bad = run_in_this_process(*args, "data.text_field=body")  # caught before any run exists: no ghost in the store
    assert bad.returncode == 2 and "data.text_field='body'" in bad.stderr
    assert len(all_runs(store)) == 1


@pytest.mark.slow
def test_the_example_layouts_read_as_the_public_corpora_do(tmp_path):
    """`data example`: FineWeb-, The Stack- and SlimPajama-like files that data=hf reads with their own columns."""
    result = cli_in_this_process("data", "example", str(tmp_path / "ex"))
    assert result.returncode == 0, result.stderr
    out = tmp_path / "tok"
    pajama = _tokenize(
        out,
        "--path",
        str(tmp_path / "ex" / "slimpajama"),
        "--domain-field",
        "meta.redpajama_set_name",
        "--max-documents",
        "40",
    )
    assert pajama.returncode == 0, pajama.stderr
    meta = json.loads((out / "meta.json").read_text())
    assert set(meta["domains"]) == {"RedPajamaGithub", "RedPajamaWikipedia", "RedPajamaArXiv"}
    assert all(info["val"]["documents"] > 0 for info in meta["domains"].values())  # its validation/ folder
    mix = (
        f"data.domains={{web: {{path: '{tmp_path / 'ex' / 'fineweb'}'}}, code: {{path: "
        f"'{tmp_path / 'ex' / 'the-stack'}', text_field: content}}}}"
    )
    assert (
        _tokenize(tmp_path / "mix", mix, "--max-documents", "20", "--tokenizer", str(out / "tokenizer.json")).returncode
        == 0
    )
    assert cli_in_this_process("data", "example", str(tmp_path / "ex")).returncode == 2  # not over a full folder
