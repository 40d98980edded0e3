"""File storage that never shows a half-written file under its final name."""

import os
import tempfile

from django.core.files.storage import FileSystemStorage


class AtomicFileSystemStorage(FileSystemStorage):
    """Writes each file under a temporary name in the target folder, syncs it, then links it into place.

    Django's FileSystemStorage writes straight to the final path, so a process killed mid-write leaves a truncated
    file that a later reader would take for the real one. Here a crash leaves only a ``.incoming-*`` file.
    """

    def _save(self, name, content):
        full_path = self.path(name)
        directory = os.path.dirname(full_path)
        os.makedirs(directory, exist_ok=True)
        fd, draft = tempfile.mkstemp(dir=directory, prefix=".incoming-")
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in content.chunks():
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(draft, self.file_permissions_mode or 0o644)
            while True:
                try:
                    os.link(draft, full_path)
                    break
                except FileExistsError:
                    name = self.get_available_name(name)
                    full_path = self.path(name)
        finally:
            os.unlink(draft)
        # The new directory entry must reach the disk too, or a power cut could lose a file whose row is committed.
        directory_fd = os.open(os.path.dirname(full_path), os.O_RDONLY)
        try:
            os.fsync(directory_fd)
        finally:
            os.close(directory_fd)
        return str(name).replace("\\", "/")
