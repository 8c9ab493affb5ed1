"""Key files: where the development keys live and how they are written.

The keys live outside the repository, in `keys_dir` (`PASSERELLE_KEYS_DIR`, by default
`$XDG_DATA_HOME/passerelle/keys`, else `~/.local/share/passerelle/keys`). A private key file
is created with mode 0600 (never readable by others, not even for an instant), the
directory with mode 0700. Next to each service's checkpoint signing key lies its public
verifier key, `<service>.verifier`: one line, the `verifier_key` that `GET /v1/keys` serves.
The audit reads those, never the private keys.

    python -m shared.cli keys      makes the missing development keys, prints where they are

Standard library only at import: the audit's reader processes import shared.checkpoint,
which imports this module.
"""

from __future__ import annotations

import base64
import fcntl
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shared.settings import Settings

VERIFIER_SUFFIX = ".verifier"
MASTER_KEY_FILE = "master.key"


def default_keys_dir() -> Path:
    """`$XDG_DATA_HOME/passerelle/keys`, else `~/.local/share/passerelle/keys`: outside any checkout."""
    base = os.environ.get("XDG_DATA_HOME", "").strip()
    # The XDG specification: a relative path in the variable is invalid and is ignored.
    root = Path(base) if base and os.path.isabs(base) else Path.home() / ".local" / "share"
    return root / "passerelle" / "keys"


def ensure_keys_dir(path: Path) -> Path:
    """Make the directory (and its parents) if missing; the directory itself is 0700."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if path.stat().st_mode & 0o077:
        try:
            path.chmod(0o700)
        except OSError:
            pass  # not ours to change; the files in it are 0600 all the same
    return path


@contextmanager
def keys_lock(keys_dir: Path) -> Iterator[None]:
    """Held while a key is made: processes starting at once make it once (made if missing, 0700)."""
    ensure_keys_dir(keys_dir)
    with open(keys_dir / ".keys.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def create_private_file(path: Path, content: bytes) -> bool:
    """Write a new private key file, mode 0600 from its creation; False if it already exists.

    Written under a temporary name, then linked to `path`: atomic, and a key another process
    made first is never replaced.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        os.write(fd, content)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        tmp.unlink()


def write_public_file(path: Path, text: str) -> None:
    """Write (or replace) a public file atomically, mode 0644."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.chmod(0o644)
    os.replace(tmp, path)


def verifier_path(keys_dir: Path, service: str) -> Path:
    return keys_dir / f"{service}{VERIFIER_SUFFIX}"


def master_key_path(settings: Settings) -> Path:
    return settings.master_key_path or settings.keys_dir / MASTER_KEY_FILE


def load_master_key(path: Path) -> bytes:
    """The master key wrapping the per-person data keys (base64, 32 bytes); made if missing."""
    if not path.exists():
        ensure_keys_dir(path.parent)
        key = os.urandom(32)
        create_private_file(path, base64.b64encode(key))
    key = base64.b64decode(path.read_text().strip())
    if len(key) != 32:
        raise ValueError(f"{path}: the master key must be 32 bytes, base64")
    return key


def move_old_keys(settings: Settings) -> tuple[list[Path], list[Path]]:
    """Move the keys an older checkout kept under `data_dir/keys` (var/keys) to keys_dir.

    The data of `make run` outlives the move: its personal data is sealed under that master
    key, its checkpoints signed with those keys, its tokens with that JWT key. A key is moved
    only where keys_dir has none of that name; (moved, left) paths, `left` the old files kept
    because keys_dir already holds a key of the same name (then the old one is not used).
    """
    old = settings.data_dir / "keys"
    if not old.is_dir() or old.resolve() == settings.keys_dir.resolve():
        return [], []
    ensure_keys_dir(settings.keys_dir)
    moved: list[Path] = []
    left: list[Path] = []
    for path in sorted(old.iterdir()):
        if not path.is_file() or path.name.startswith("."):
            continue  # the lock file, a temporary file of a write that died
        target = settings.keys_dir / path.name
        if target.exists():
            left.append(path)
            continue
        os.chmod(path, 0o644 if path.name.endswith((".pub.pem", VERIFIER_SUFFIX)) else 0o600)
        shutil.move(path, target)  # a rename on one file system, else a copy then the old one removed
        moved.append(target)
    if not left:
        try:
            for path in old.iterdir():
                path.unlink()  # what is left: the lock file
            old.rmdir()
        except OSError:
            pass  # something else in there: not ours to delete
    return moved, left


def make_dev_keys(settings: Settings) -> list[tuple[str, Path]]:
    """Make every missing development key; (what, path) of each file, private or public.

    Each service's checkpoint signing key and its verifier file, the personal-data master
    key, the JWT development key pair. A path set explicitly (`PASSERELLE_CHECKPOINT_KEY_PATH`,
    ...) is used as it is: the signing key is then never made, and no verifier file written.
    """
    from shared.auth import ensure_dev_keys
    from shared.checkpoint import load_signer, signing_key_path
    from shared.topics import SERVICES

    ensure_keys_dir(settings.keys_dir)
    made: list[tuple[str, Path]] = []
    for service in SERVICES if not settings.checkpoint_key_path else ():  # an explicit path is one service's
        one = settings.model_copy(update={"service": service})
        load_signer(one)
        made.append((f"{service} checkpoint signing key", signing_key_path(one)))
        made.append((f"{service} verifier key", verifier_path(settings.keys_dir, service)))
    path = master_key_path(settings)
    load_master_key(path)
    made.append(("personal-data master key", path))
    if not settings.jwt_jwks_url:
        private, public = ensure_dev_keys(settings)
        made += [("JWT development private key", private), ("JWT development public key", public)]
    return made
