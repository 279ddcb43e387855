"""_util: small helpers shared across layers (array layout, atomic file writes)."""
import os
import uuid

import numpy as np


def contiguous(a):
    """`a` as a C-contiguous array, keeping 0-d arrays 0-d (np.ascontiguousarray makes them 1-d)."""
    return a if a.flags.c_contiguous else np.array(a, order="C")


def atomic_write(path, write) -> None:
    """Replace the file at `path` so that readers see the old content or the new, never a part.

    `write(f)` fills a temporary file in the same folder (so the rename is atomic), which is
    flushed, fsynced and renamed over `path`; the rename itself is then made durable. The
    temporary file is made with mode 0o666 and the umask, like any other file (mkstemp would
    force 0o600). On any error the temporary file is removed and the error raised."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{uuid.uuid4().hex[:12]}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:  # the rename itself durable; not possible on every platform
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass
