"""`balance-lab data example DIR`: the built-in corpus laid out as the public corpora researchers download,
so that `data=hf` can be tried (and benchmarked) offline with the same commands as on the real thing:

    DIR/fineweb/sample/000_0000N.parquet             FineWeb's columns (text, id, dump, url, date, language,
                                                     language_score, token_count): the prose and math documents
    DIR/the-stack/python/data-0000N.jsonl.zst        The Stack's (content, max_stars_repo_path, max_stars_repo_name,
                                                     lang, size): the code documents
    DIR/slimpajama/{train,validation}/chunk1/*.jsonl.zst  SlimPajama's (text, meta.redpajama_set_name): all three,
                                                     with its own validation split

`copies` > 1 repeats the corpus (each copy's documents marked, so they stay distinct) for a larger corpus.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Iterator

SHARD_DOCUMENTS = 20_000
SET_NAMES = {"code": "RedPajamaGithub", "prose": "RedPajamaWikipedia", "math": "RedPajamaArXiv"}


def _documents(copies: int) -> Iterator[tuple[str, str, str]]:
    """(domain, id, text) of the built-in corpus, `copies` times."""
    from balance_lab.data.builtin import DOMAINS, domain_documents

    cached = {d: list(domain_documents(d, 4000, 1234)) for d in DOMAINS}
    for copy in range(copies):
        for domain, docs in cached.items():
            for doc in docs:
                yield domain, f"{copy}:{doc.id}", doc.text if copy == 0 else f"{doc.text}\n# copy {copy}\n"


def _uuid(key: str) -> str:
    h = hashlib.sha1(key.encode()).hexdigest()
    return f"<urn:uuid:{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}>"


class _Shards:
    """Rows written in shards of SHARD_DOCUMENTS: parquet or zstd-compressed JSON lines."""

    def __init__(self, folder: Path, name: str, kind: str):
        self.folder, self.name, self.kind, self.rows, self.count = folder, name, kind, [], 0
        folder.mkdir(parents=True, exist_ok=True)

    def add(self, row: dict) -> None:
        self.rows.append(row)
        if len(self.rows) == SHARD_DOCUMENTS:
            self.flush()

    def flush(self) -> None:
        if not self.rows:
            return
        path = self.folder / self.name.format(self.count)
        if self.kind == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.Table.from_pylist(self.rows), path)
        else:
            import zstandard

            lines = "".join(json.dumps(row) + "\n" for row in self.rows)
            path.write_bytes(zstandard.ZstdCompressor(level=3).compress(lines.encode()))
        self.rows, self.count = [], self.count + 1


def write_example(out: Path, copies: int = 1) -> dict[str, int]:
    """Writes the three layouts; returns documents per layout."""
    web = _Shards(out / "fineweb" / "sample", "000_{:05d}.parquet", "parquet")
    code = _Shards(out / "the-stack" / "python", "data-{:05d}.jsonl.zst", "jsonl")
    pajama = {
        s: _Shards(out / "slimpajama" / s / "chunk1", f"example_{s}_{{}}.jsonl.zst", "jsonl")
        for s in ("train", "validation")
    }
    counts = {"fineweb": 0, "the-stack": 0, "slimpajama": 0}
    for i, (domain, doc_id, text) in enumerate(_documents(copies)):
        if domain == "code":
            path = doc_id.split(":", 2)[-1]
            code.add(
                {
                    "content": text,
                    "max_stars_repo_path": path,
                    "max_stars_repo_name": "python/cpython",
                    "lang": "Python",
                    "size": len(text.encode()),
                }
            )
            counts["the-stack"] += 1
        else:
            web.add(
                {
                    "text": text,
                    "id": _uuid(doc_id),
                    "dump": "CC-MAIN-2024-10",
                    "url": f"https://example.org/{i}",
                    "date": "2024-02-21T00:00:00Z",
                    "language": "en",
                    "language_score": 0.95,
                    "token_count": len(text) // 4,
                }
            )
            counts["fineweb"] += 1
        split = "validation" if hashlib.sha1(doc_id.encode()).digest()[0] < 8 else "train"  # ~3% held out
        pajama[split].add({"text": text, "meta": {"redpajama_set_name": SET_NAMES[domain]}})
        counts["slimpajama"] += 1
    for shards in (web, code, *pajama.values()):
        shards.flush()
    return counts
