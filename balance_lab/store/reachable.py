"""Whether a tracking URI names a store a run could be recorded in; each entry point (run, sweep, the
training process) asks once, explicitly, before anything is recorded."""

from __future__ import annotations

import os
import urllib.error
import urllib.request

from balance_lab.errors import ConfigError

URI_SCHEMES = ("sqlite", "file", "http", "https", "postgresql", "mysql", "mssql", "databricks")


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """A store that a run could be recorded in: a known scheme, an existing folder, a server that answers."""
    scheme = uri.split(":", 1)[0].lower() if "://" in uri else "file"
    scheme = scheme.split("+", 1)[0]  # postgresql+psycopg2://
    if scheme not in URI_SCHEMES:
        raise ConfigError(
            f"tracking URI {uri!r}: unknown scheme {scheme!r}; use one of "
            "sqlite:///PATH, http(s)://HOST:PORT, file:///PATH, postgresql://, mysql://, databricks"
        )
    if scheme == "file" and os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").lower() not in ("1", "true"):
        path = uri.removeprefix("file://")
        database = path if path.endswith(".db") else path.rstrip("/") + ".db"
        raise ConfigError(
            f"tracking URI {uri!r}: MLflow reads this as a folder store, which MLflow 3 refuses; use a SQLite "
            f"file, sqlite:///{database} (or set MLFLOW_ALLOW_FILE_STORE=true)"
        )
    if scheme == "sqlite":
        from balance_lab.store.tracking import sqlite_file

        folder = sqlite_file(uri).parent
        if not folder.is_dir():
            raise ConfigError(f"tracking URI {uri!r}: the folder {folder} does not exist")
    if scheme in ("http", "https"):
        try:
            with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout):
                pass
        except urllib.error.HTTPError:
            pass  # something answers; MLflow behind a proxy may not serve /health
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ConfigError(
                f"tracking URI {uri!r}: no MLflow server answers ({reason}); start one "
                "(mlflow server / balance-lab ui) or check the address"
            ) from exc
