"""Tokenising a Hugging Face-format corpus: MB of text per second and peak memory, side by side in one run.

The corpus is generated (`balance-lab data example --copies N`: the built-in corpus, ~15.7 MB of text per
copy, as SlimPajama-like jsonl.zst with its domain field); the tokenizer is an 8K byte-level BPE trained
once beforehand, so what is timed is reading + encoding + writing. Each variant is the command a user
types, `balance-lab data tokenize OUT --source hf --path corpus/slimpajama --domain-field
meta.redpajama_set_name --tokenizer tok.json ...`, in a fresh process; memory is the peak resident set
of its whole process tree (workers included), sampled every 0.1 s.

    .venv/bin/python benchmarks/tokenize_speed.py [--copies 6] [--repeats 1] [--only-stream]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

BALANCE_LAB = str(Path(sys.executable).with_name("balance-lab"))
VARIANTS = {  # name -> extra options
    "stream, 1 process": ["--streaming"],
    "stream, 2 processes": ["--streaming", "--workers", "2"],
    "arrow copy, 1 process": [],
}


def tree_rss_mb(pid: int) -> float:
    """Resident memory of pid and all its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()
            rss[int(entry)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
            children.setdefault(int(fields[1]), []).append(int(entry))
        except (OSError, IndexError, ValueError):
            continue
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += rss.get(p, 0)
        todo += children.get(p, [])
    return total / 2**20


def timed(command: list[str], cwd: Path) -> tuple[float, float]:
    """(wall s, peak RSS MB of the process tree)."""
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = [0.0]

    def sample() -> None:
        while process.poll() is None:
            peak[0] = max(peak[0], tree_rss_mb(process.pid))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, err = process.communicate()
    wall = time.perf_counter() - started
    sampler.join()
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{err[-2000:]}")
    return wall, peak[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=6, help="copies of the built-in corpus (~15.7 MB of text each)")
    parser.add_argument("--repeats", type=int, default=1, help="runs per variant (median reported)")
    parser.add_argument(
        "--only-stream",
        action="store_true",
        help="only the streamed 1-process variant (memory against size at several --copies)",
    )
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-tokenize-"))
    wall, _ = timed([BALANCE_LAB, "data", "example", "corpus", "--copies", str(args.copies)], folder)
    size = sum(p.stat().st_size for p in (folder / "corpus" / "slimpajama").rglob("*.zst")) / 2**20
    print(
        f"corpus: {args.copies} copies of the built-in corpus as SlimPajama-like jsonl.zst, {size:.0f} MB "
        f"compressed, written in {wall:.0f} s; {os.cpu_count()} cores\n"
    )
    common = ["--source", "hf", "--path", "corpus/slimpajama", "--domain-field", "meta.redpajama_set_name"]
    timed([BALANCE_LAB, "data", "tokenize", "tok0", *common, "--vocab-size", "8192", "--max-documents", "3000"], folder)
    tokenizer = str(folder / "tok0" / "tokenizer.json")
    rows = {}
    variants = {k: v for k, v in VARIANTS.items() if k == "stream, 1 process" or not args.only_stream}
    for name, extra in variants.items():
        walls, peaks = [], []
        for r in range(args.repeats):
            out = folder / f"out-{len(rows)}-{r}"
            hf_cache = folder / f"hf-cache-{len(rows)}-{r}"  # a fresh Arrow copy each time (what a first run pays)
            w, p = timed(
                [
                    BALANCE_LAB,
                    "data",
                    "tokenize",
                    str(out),
                    *common,
                    "--tokenizer",
                    tokenizer,
                    *extra,
                    f"data.hf_cache_dir={hf_cache}",
                ],
                folder,
            )
            walls.append(w)
            peaks.append(p)
        meta = json.loads((out / "meta.json").read_text())
        text_mb = sum(info[s]["bytes"] for info in meta["domains"].values() for s in ("train", "val")) / 1e6
        tokens = sum(info[s]["tokens"] for info in meta["domains"].values() for s in ("train", "val"))
        rows[name] = (statistics.median(walls), max(peaks), text_mb, tokens)
    print(f"{'variant':24s}{'wall s':>9}{'MB/s':>8}{'Mtok/s':>8}{'peak RSS MB':>13}")
    for name, (wall, peak, text_mb, tokens) in rows.items():
        print(f"{name:24s}{wall:>9.1f}{text_mb / wall:>8.2f}{tokens / wall / 1e6:>8.2f}{peak:>13.0f}")
    base = rows["stream, 1 process"][0]
    if args.only_stream:
        return
    print(
        f"\ntext {rows['stream, 1 process'][2]:.0f} MB; 2 processes / 1: {base / rows['stream, 2 processes'][0]:.2f}x "
        f"the speed; arrow copy / stream: {base / rows['arrow copy, 1 process'][0]:.2f}x the speed"
    )


if __name__ == "__main__":
    main()
