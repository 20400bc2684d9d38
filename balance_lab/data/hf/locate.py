"""Where a dataset is: files (and their format), a folder, a save_to_disk folder, or the hub (reachable?)."""

from __future__ import annotations

import glob
import os
import re
from pathlib import Path

from balance_lab.data.hf.spec import ONE_DOMAIN, HFSpec
from balance_lab.errors import ConfigError

BUILDERS = {
    ".parquet": "parquet",
    ".json": "json",
    ".jsonl": "json",
    ".ndjson": "json",
    ".arrow": "arrow",
    ".csv": "csv",
    ".txt": "text",
}
COMPRESSIONS = (".gz", ".zst", ".zstd", ".bz2", ".xz")
HUB_PROBE_SECONDS = 5.0  # a hub that does not answer within this is offline


def locate(path: str) -> tuple[str, object]:
    """("disk", folder) | ("files", (builder, [files])) | ("folder", folder) | ("hub", name)."""
    expanded = os.path.expanduser(path)
    if glob.has_magic(expanded):
        files = sorted(p for p in glob.glob(expanded, recursive=True) if os.path.isfile(p))
        if not files:
            raise ConfigError(f"data.path={path!r}: no file matches")
        return "files", (_builder(path, files), files)
    target = Path(expanded)
    if target.is_file():
        return "files", (_builder(path, [str(target)]), [str(target)])
    if target.is_dir():
        if (target / "dataset_dict.json").is_file() or (target / "state.json").is_file():
            return "disk", str(target)
        return "folder", str(target)
    if re.fullmatch(r"[\w.-]+(/[\w.-]+)?", path) and not path.startswith((".", "~")):
        return "hub", path
    raise ConfigError(f"data.path={path!r}: no such file or folder (nor a hub dataset name, org/name)")


def _builder(path: str, files: list[str]) -> str:
    builders = set()
    for name in files:
        base = name.lower()
        for ending in COMPRESSIONS:
            base = base.removesuffix(ending)
        suffix = os.path.splitext(base)[1]
        if suffix not in BUILDERS:
            raise ConfigError(
                f"data.path={path!r}: {os.path.basename(name)} is not a dataset file this reads "
                f"({', '.join(BUILDERS)}, also compressed: {', '.join(COMPRESSIONS)})"
            )
        builders.add(BUILDERS[suffix])
    if len(builders) > 1:
        raise ConfigError(
            f"data.path={path!r}: mixes {' and '.join(sorted(builders))} files; one format per dataset "
            "(several datasets: one per domain in data.domains)"
        )
    return builders.pop()


def check_hub_reachable(path: str) -> None:
    """Raise at once when a hub dataset cannot be fetched: offline mode, or no answer within seconds."""
    import socket
    import threading
    from urllib.parse import urlparse

    for flag in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        if os.environ.get(flag, "").strip().lower() in ("1", "true", "yes", "on"):
            raise ConfigError(
                f"data.path={path!r}: not a local file or folder, and the Hugging Face Hub is off here "
                f"({flag}=1); a hub dataset needs the network: give a local path"
            )
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host, port = endpoint.hostname or "huggingface.co", endpoint.port or (80 if endpoint.scheme == "http" else 443)
    outcome: list = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=HUB_PROBE_SECONDS).close()
            outcome.append(None)
        except OSError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=probe, daemon=True)  # name resolution ignores the socket's timeout
    thread.start()
    thread.join(HUB_PROBE_SECONDS + 1)
    if not outcome or outcome[0] is not None:
        reason = "no answer" if not outcome else (outcome[0].strerror or type(outcome[0]).__name__)
        raise ConfigError(
            f"data.path={path!r}: not a local file or folder, and the Hugging Face Hub ({host}) cannot "
            f"be reached ({reason}): offline? a hub dataset needs the network; give a local path"
        )


def check_reachable(spec: HFSpec) -> None:
    """Every dataset's path names something (files, a folder, a hub dataset that can be fetched)."""
    for domain, corpus in spec.corpora.items():
        try:
            kind, _ = locate(corpus.path)
            if kind == "hub":
                check_hub_reachable(corpus.path)
        except ConfigError as exc:
            raise ConfigError(
                str(exc).replace("data.path=", f"data.domains.{domain}.path=")
                if domain and domain != ONE_DOMAIN
                else str(exc)
            ) from exc
