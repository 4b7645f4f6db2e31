"""The study's storage, checked before anything is created: the `--storage` URL parsed, its database
driver present, a SQLite file neither inside the source nor inside the output (nothing live is ever
shipped in a model folder) and writable; and, when opening the study fails, what failed, in words.

Every line this module words goes through `ropeconv.redact` with the URL's own password: a driver's
message may quote the password alone, outside any URL. sqlalchemy is imported inside the functions.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from ropeconv.errors import RopeconvError
from ropeconv.redact import redact, url_password

INSTALL_HINT = 'pip install "ropeconv[tune]"'


@dataclass(frozen=True)
class StorageTarget:
    """A checked storage URL: what is opened, and what is shown."""

    url: str  # what Optuna opens (a bare postgresql:// is given the installed driver)
    shown: str  # the URL with its password masked
    password: str | None  # masked wherever it shows up
    sqlite_path: Path | None  # the database file, for SQLite

    def scrub(self, text: str) -> str:
        return redact(text, (self.password,) if self.password else ())


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{Path(path).absolute()}"


def check_storage(url: str, *, source: Path, output: Path | None) -> StorageTarget:
    """Parse and check `url` without connecting: RopeconvError (exit 2) for a URL that cannot work."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    password = url_password(url)
    shown = redact(url, (password,) if password else ())
    try:
        parsed = make_url(url)
        dialect = parsed.get_dialect()
    except (ArgumentError, NoSuchModuleError, ValueError) as exc:
        raise RopeconvError(f"--storage {shown} is not a database URL ({redact(str(exc), (password or '',))})",
                            "pass --storage sqlite:///PATH.db or postgresql://USER:PASSWORD@HOST:PORT/DB") from None
    if parsed.drivername == "postgresql" and _missing("psycopg") and not _missing("psycopg2"):
        parsed = parsed.set(drivername="postgresql+psycopg2")  # SQLAlchemy ≥ 2.1 defaults to psycopg 3
        dialect = parsed.get_dialect()
    try:
        dialect.import_dbapi()
    except ImportError as exc:
        module = getattr(exc, "name", None) or str(exc)
        fix = (f"run: {INSTALL_HINT} (it installs psycopg2-binary) and use postgresql://…"
               if parsed.get_backend_name() == "postgresql" else f"install the Python package that provides {module}")
        raise RopeconvError(f"--storage {shown} needs the database driver {module}, which is not installed",
                            fix) from None
    sqlite_path = None
    if parsed.get_backend_name() == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise RopeconvError(f"--storage {shown} is an in-memory SQLite database: no other process or later "
                                "run could see the study", "pass --storage sqlite:///PATH.db")
        sqlite_path = Path(parsed.database).absolute()
        _check_sqlite_place(sqlite_path, shown, source, output)
    return StorageTarget(parsed.render_as_string(hide_password=False), shown, password, sqlite_path)


def _missing(module: str) -> bool:
    return importlib.util.find_spec(module) is None


def _check_sqlite_place(path: Path, shown: str, source: Path, output: Path | None) -> None:
    real = path.resolve()
    for folder, what in ((source, "the source model folder"), (output, "the output folder")):
        if folder is None:
            continue
        inside = Path(folder).absolute().resolve()
        if inside == real or inside in real.parents:
            raise RopeconvError(f"--storage {shown} is inside {what} {folder}: a live database would be written "
                                "into a model folder", "put the study database outside it, e.g. beside the output")
    if path.exists() and not path.is_file():
        raise RopeconvError(f"--storage {shown} is not a file", "pass --storage sqlite:///PATH.db")
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        raise RopeconvError(f"the study database {path} is read-only", "make it writable, or pass another --storage")
    parent = next((p for p in [path.parent, *path.parent.parents] if p.exists()), Path("/"))
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        # SQLite writes its journal beside the database: a read-only folder makes the database read-only
        raise RopeconvError(f"the study database's folder {parent} is read-only", "pass another --storage")


def open_failure(exc: BaseException, target: StorageTarget) -> RopeconvError:
    """What went wrong opening the study, in words (never "the storage" for everything)."""
    chain, cause = [], exc
    while cause is not None and len(chain) < 8:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    text = " | ".join(str(e) for e in chain).lower()
    root = chain[-1]
    detail = target.scrub((str(root).strip().splitlines() or [type(root).__name__])[0])[:200]
    if "readonly" in text or "read-only" in text or "read only" in text:
        return RopeconvError(f"the study database {target.shown} is read-only ({detail})",
                             "make it writable, or pass another --storage")
    if "password authentication failed" in text or "access denied" in text:
        return RopeconvError(f"the database server refused the login in --storage {target.shown} ({detail})",
                             "check the user name and password")
    if "does not exist" in text and "database" in text:
        return RopeconvError(f"the database named in --storage {target.shown} does not exist ({detail})",
                             "create it first (e.g. createdb NAME), or name an existing one")
    if "could not connect" in text or "connection refused" in text or "could not translate host" in text \
            or "timeout expired" in text:
        return RopeconvError(f"cannot reach the database server of --storage {target.shown} ({detail})",
                             "check the host and port, and that the server is running")
    if "unable to open database file" in text:
        return RopeconvError(f"cannot create the SQLite file of --storage {target.shown} ({detail})",
                             "check that its folder exists and is writable")
    if "file is not a database" in text or "malformed" in text:
        return RopeconvError(f"--storage {target.shown} is not a SQLite database ({detail})",
                             "pass a new file name, or the .db an earlier tune wrote")
    return RopeconvError(f"cannot open the study in --storage {target.shown} ({type(root).__name__}: {detail})",
                         "pass --storage sqlite:///PATH.db or a database URL Optuna accepts")


def is_creation_race(exc: BaseException) -> bool:
    """Two processes creating the same schema or study: the loser retries and loads it."""
    text = ""
    cause: BaseException | None = exc
    for _ in range(8):
        if cause is None:
            break
        text += f" {type(cause).__name__} {cause}".lower()
        cause = cause.__cause__ or cause.__context__
    return any(word in text for word in ("integrityerror", "already exists", "duplicate", "database is locked",
                                         "unique constraint"))
