"""Where the authors' released checkpoints are found, verified and kept.

A released checkpoint (a :class:`~igc_keras.applications.pretrained.
PretrainedConfig`) lives in the Keras cache, ``<KERAS_HOME or ~/.keras>/
models/igc_keras/authors/<file_name>``. :func:`fetch_checkpoint` returns its
path, verified:

* the cached file is checked by its git blob id every time it is read; a file
  that fails (a flipped bit, a truncation, an empty or unreadable file) is
  reported by path and fetched again, never parsed;
* a missing file is fetched from the mirror named by the environment variable
  :data:`MIRROR_ENV` (a folder, or a URL base, where the authors' files are
  found by their file names: air-gapped sites), else from the authors'
  repository, with ``keras.utils.get_file``, into a temporary file that is
  verified *before* it is renamed into place;
* fetching and renaming happen under a file lock next to the cache file, so
  any number of processes asking at once wait for one download and all read
  the same verified file; a process killed mid-download leaves only its
  temporary files, which the next download of that file removes. Cache
  files are readable by the group (as Keras' own).
"""

import hashlib
import os
import shutil
import tempfile
import warnings

import keras

#: Environment variable: a folder or a URL base holding the authors' files
#: under their own names (``igcv3-0000.params``, ...).
MIRROR_ENV = "IGC_KERAS_WEIGHTS_MIRROR"


def git_blob_sha1(path):
    """The git blob id of a file: ``sha1(b"blob <size>\\0" + content)``."""
    digest = hashlib.sha1(b"blob %d\0" % os.path.getsize(path))
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_file(path, expected_sha1):
    """Raises ``ValueError`` naming ``path`` unless its git blob id is
    ``expected_sha1``."""
    if not os.path.isfile(path):
        raise ValueError(f"weights file {path!r} does not exist.")
    try:
        actual = git_blob_sha1(path)
    except OSError as error:
        raise ValueError(f"weights file {path!r} cannot be read: {error}.") \
            from error
    if actual != expected_sha1:
        raise ValueError(
            f"weights file {path!r} failed its integrity check: git blob id "
            f"{actual}, expected {expected_sha1}. The file is corrupt, "
            f"truncated or not the authors' release.")
    return path


def cache_root(cache_dir=None):
    """``cache_dir``, else ``$KERAS_HOME``, else ``~/.keras`` (read at call
    time)."""
    return cache_dir or os.environ.get("KERAS_HOME") or os.path.join(
        os.path.expanduser("~"), ".keras")


def checkpoint_dir(cache_dir=None):
    return os.path.join(cache_root(cache_dir), "models", "igc_keras", "authors")


def _origin(config):
    """``(origin URL or local path, what to call it)``: the mirror's copy
    when :data:`MIRROR_ENV` is set, else the authors' repository."""
    mirror = os.environ.get(MIRROR_ENV)
    if not mirror:
        return config.origin, config.origin
    if "://" in mirror:
        url = mirror.rstrip("/") + "/" + config.file_name
        return url, f"{url} ({MIRROR_ENV})"
    path = os.path.join(mirror, config.file_name)
    if not os.path.isfile(path):
        raise ValueError(
            f"{MIRROR_ENV}={mirror!r} has no {config.file_name!r} (the "
            f"{config.model} checkpoint, from {config.origin}).")
    return path, f"{path} ({MIRROR_ENV})"


def _download(config, folder):
    """Fetches the checkpoint into a temporary file in ``folder`` and
    verifies it; returns the temporary path."""
    origin, label = _origin(config)
    scratch = tempfile.mkdtemp(prefix=f".{config.file_name}.fetch-",
                               dir=folder)
    try:
        if "://" in origin:
            try:
                path = keras.utils.get_file(fname=config.file_name,
                                            origin=origin,
                                            cache_dir=scratch,
                                            cache_subdir=".")
            except Exception as error:  # get_file raises several types
                raise ValueError(f"could not download the {config.model} "
                                 f"checkpoint from {label}: {error}") from error
        else:
            path = os.path.join(scratch, config.file_name)
            shutil.copyfile(origin, path)
        try:
            verify_file(path, config.git_blob_sha1)
        except ValueError as error:
            raise ValueError(f"the {config.model} checkpoint from {label}: "
                             f"{error}") from None
        handle, partial = tempfile.mkstemp(prefix=f".{config.file_name}.",
                                           dir=folder)
        os.close(handle)
        os.replace(path, partial)
        os.chmod(partial, 0o644)
        return partial
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _remove_leftovers(config, folder):
    """Removes the temporary files of downloads of ``config``'s file that
    were killed (called under its lock: no other download of it runs)."""
    for name in os.listdir(folder):
        if name.startswith(f".{config.file_name}."):
            path = os.path.join(folder, name)
            if os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.remove(path)


def fetch_checkpoint(config, cache_dir=None):
    """The verified path of ``config``'s checkpoint (see the module
    docstring). Raises ``ValueError`` naming the origin or the file."""
    from filelock import FileLock
    folder = checkpoint_dir(cache_dir)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, config.file_name)
    with FileLock(path + ".lock"):
        if os.path.exists(path):
            try:
                return verify_file(path, config.git_blob_sha1)
            except ValueError as error:
                warnings.warn(f"{error} Fetching it again.")
                os.remove(path)
        _remove_leftovers(config, folder)
        partial = _download(config, folder)
        try:
            os.replace(partial, path)
        finally:
            if os.path.exists(partial):
                os.remove(partial)
    return path
