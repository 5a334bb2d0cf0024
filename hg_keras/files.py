"""Files: strict YAML mappings and atomic writes.

Config and schema files are small and hand-edited, so typos are the common
failure: unknown keys get a "did you mean" suggestion instead of being
silently ignored.
"""

import difflib
import os
import tempfile
from pathlib import Path

import yaml

from hg_keras.errors import InputError


def read_yaml(path):
    """Reads a YAML file that must hold a mapping.

    Raises:
        InputError: the file is missing, unreadable or not a YAML mapping.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except OSError as error:
        raise InputError(f"{path}: cannot read ({error.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise InputError(f"{path}: broken YAML{where}") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a YAML mapping at the top level")
    return data


def check_keys(mapping, allowed, where):
    """Raises on any key of `mapping` not in `allowed`, suggesting the nearest."""
    for key in mapping:
        if key not in allowed:
            near = difflib.get_close_matches(str(key), list(allowed), n=1)
            hint = f"; did you mean '{near[0]}'?" if near else ""
            known = ", ".join(sorted(allowed))
            raise InputError(f"{where}: unknown key '{key}'{hint} (known keys: {known})")


def atomic_write(path, write, suffix=".tmp"):
    """Writes a file through a temporary sibling, then renames it into place.

    A failure part-way leaves any previous file at `path` untouched.

    Args:
        path: str or Path, the final location.
        write: callable taking the temporary path (a str) and writing to it.
        suffix: str, the temporary file's suffix (some writers check it).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(handle)
    try:
        write(tmp)
        # mkstemp makes the file private; give it the mode a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        if os.path.isfile(tmp):
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_yaml(path, data):
    """Writes `data` as YAML atomically, keeping key order."""

    def write(tmp):
        with open(tmp, "w") as stream:
            yaml.safe_dump(data, stream, sort_keys=False, allow_unicode=True)

    atomic_write(path, write)
