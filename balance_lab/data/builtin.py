"""The built-in corpus: three domains made from the Python installation that runs balance-lab.

- code:  the standard library's .py sources (one document per file);
- prose: English docstrings of the standard library and the pydoc topic texts (one per docstring/topic);
- math:  arithmetic and algebra lines generated from a fixed seed (one document per block of lines).

Deterministic for a given Python version; split by document with a hash of the document id, so a
validation document is never seen in training and the split does not depend on the run's seed.
Built once (a few seconds) and cached as token arrays.
"""

from __future__ import annotations

import ast
import hashlib
import os
import random
import sys
import sysconfig
from pathlib import Path
from typing import Iterator

import numpy as np

from balance_lab.data.tokenizer import ByteTokenizer
from balance_lab.data.types import Document, DomainSplit

CORPUS_VERSION = 1
DOMAINS = ("code", "prose", "math")
_SKIP_DIRS = {
    "site-packages",
    "dist-packages",
    "test",
    "tests",
    "idlelib",
    "lib2to3",
    "turtledemo",
    "ensurepip",
    "__pycache__",
}
_MIN_DOCSTRING_CHARS = 200


def _stdlib_files() -> list[Path]:
    root = Path(sysconfig.get_paths()["stdlib"])
    files = (p for p in root.rglob("*.py") if not _SKIP_DIRS.intersection(p.relative_to(root).parts))
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def code_documents() -> Iterator[Document]:
    root = Path(sysconfig.get_paths()["stdlib"])
    for path in _stdlib_files():
        text = path.read_text("utf-8", errors="replace")
        if text.strip():
            yield Document(f"code:{path.relative_to(root).as_posix()}", text)


def prose_documents() -> Iterator[Document]:
    root = Path(sysconfig.get_paths()["stdlib"])
    for path in _stdlib_files():
        try:
            tree = ast.parse(path.read_text("utf-8", errors="replace"))
        except (SyntaxError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc and len(doc) >= _MIN_DOCSTRING_CHARS:
                    name = getattr(node, "name", "<module>")
                    line = node.lineno if hasattr(node, "lineno") else 0
                    yield Document(f"prose:{path.relative_to(root).as_posix()}:{name}:{line}", doc)
    from pydoc_data.topics import topics

    for name in sorted(topics):
        yield Document(f"prose:topic:{name}", topics[name])


def _math_line(rng: random.Random) -> str:
    kind = rng.randrange(5)
    a, b, c = rng.randint(2, 99), rng.randint(2, 99), rng.randint(1, 9)
    if kind == 0:
        op = rng.choice("+-*")
        return f"{a} {op} {b} = {eval(f'{a}{op}{b}')}"
    if kind == 1:  # a*x + b = a*c + b  ->  x = c
        return f"Solve {c}x + {a} = {c * b + a}. x = {b}"
    if kind == 2:  # (x + a)(x - c) = x^2 + (a - c)x - a*c
        return f"(x + {a})(x - {c}) = x^2 + {a - c}x - {a * c}"
    if kind == 3:
        return f"{a * c} / {c} = {a}, remainder {b % c} of {b} / {c}"
    return f"gcd({a * c}, {b * c}) is a multiple of {c}; {a}^2 = {a * a}"


def math_documents(n_documents: int, seed: int, lines_per_document: int = 24) -> Iterator[Document]:
    for i in range(n_documents):
        rng = random.Random(f"{seed}:{i}")
        yield Document(f"math:{seed}:{i}", "\n".join(_math_line(rng) for _ in range(lines_per_document)) + "\n")


def is_validation(doc_id: str, val_fraction: float) -> bool:
    """Split by a hash of the document id: stable across runs, seeds and machines."""
    bucket = int.from_bytes(hashlib.sha1(doc_id.encode()).digest()[:4], "big") % 10_000
    return bucket < val_fraction * 10_000


def split_documents(docs: Iterator[Document], val_fraction: float, tokenizer: ByteTokenizer) -> DomainSplit:
    parts: dict[bool, list[np.ndarray]] = {False: [], True: []}
    eot = np.array([tokenizer.eot], dtype=np.uint8)
    for doc in docs:
        parts[is_validation(doc.id, val_fraction)] += [tokenizer.encode(doc.text), eot]
    joined = {k: np.concatenate(v) if v else np.zeros(0, np.uint8) for k, v in parts.items()}
    return DomainSplit(joined[False], joined[True], len(parts[False]) // 2, len(parts[True]) // 2)


def domain_documents(domain: str, math_documents_n: int, seed: int) -> Iterator[Document]:
    """One domain's documents, in a fixed order (the byte corpus and the BPE corpus both read them)."""
    if domain == "code":
        return code_documents()
    if domain == "prose":
        return prose_documents()
    return math_documents(math_documents_n, seed)


def corpus_key(val_fraction: float, math_documents_n: int, seed: int) -> str:
    """What the built-in corpus depends on: its version, this Python, the split and the math generator."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}"
    return f"v{CORPUS_VERSION}-py{version}-val{val_fraction}-math{math_documents_n}-seed{seed}"


def load_builtin_corpus(
    cache_dir: str | Path, val_fraction: float = 0.05, math_documents_n: int = 4000, seed: int = 1234
) -> dict[str, DomainSplit]:
    """Every domain's train/val token streams, built on first use and then read from the cache."""
    path = Path(cache_dir).expanduser() / f"builtin-{corpus_key(val_fraction, math_documents_n, seed)}.npz"
    if path.exists():
        with np.load(path) as z:
            return {
                d: DomainSplit(z[f"{d}_train"], z[f"{d}_val"], int(z[f"{d}_ntrain"]), int(z[f"{d}_nval"]))
                for d in DOMAINS
            }
    tokenizer = ByteTokenizer()
    splits = {d: split_documents(domain_documents(d, math_documents_n, seed), val_fraction, tokenizer) for d in DOMAINS}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(
        f"{path.stem}.{os.getpid()}.tmp.npz"
    )  # write then rename: concurrent runs never read half a file
    arrays = {}
    for d, s in splits.items():
        arrays |= {f"{d}_train": s.train, f"{d}_val": s.val, f"{d}_ntrain": s.n_train_docs, f"{d}_nval": s.n_val_docs}
    np.savez(tmp, **arrays)
    tmp.replace(path)
    return splits
