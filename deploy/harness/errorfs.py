#!/usr/bin/python3
"""A passthrough filesystem (FUSE) whose writes can be made to fail, for Nestor's fault harness.

    errorfs.py BACKING MOUNTPOINT CONTROL

Every file operation on MOUNTPOINT is done on BACKING. While the file CONTROL holds the word
`read-only`, every operation that would change the filesystem (write, create, truncate, rename,
unlink, mkdir, chmod, fsync...) fails with EROFS, as on a filesystem the kernel has remounted
read-only; reads go on. Anything else in CONTROL (or no CONTROL) lets writes through again.
It prints `mounted` on stdout once the filesystem is mounted and serving.

The kernel refuses `mount -o remount,ro` (EBUSY) while a process holds a file open for writing,
as a database does; this filesystem gives the same failure with the file open. It runs in the
foreground until MOUNTPOINT is unmounted. Needs Debian's python3-fusepy.
"""
import errno
import os
import sys

from fusepy import FUSE, FuseOSError, Operations


class ErrorFS(Operations):
    def __init__(self, backing, control):
        self.backing = backing
        self.control = control

    def init(self, path):
        print('mounted', flush=True)

    def _path(self, path):
        return os.path.join(self.backing, path.lstrip('/'))

    def _writable(self):
        try:
            with open(self.control) as handle:
                mode = handle.read().strip()
        except OSError:
            return
        if mode == 'read-only':
            raise FuseOSError(errno.EROFS)

    # Reads.
    def access(self, path, mode):
        if not os.access(self._path(path), mode):
            raise FuseOSError(errno.EACCES)

    def getattr(self, path, fh=None):
        st = os.lstat(self._path(path))
        return {key: getattr(st, key) for key in
                ('st_atime', 'st_ctime', 'st_gid', 'st_mode', 'st_mtime', 'st_nlink', 'st_size', 'st_uid')}

    def readdir(self, path, fh):
        return ['.', '..'] + os.listdir(self._path(path))

    def statfs(self, path):
        st = os.statvfs(self._path(path))
        return {key: getattr(st, key) for key in
                ('f_bavail', 'f_bfree', 'f_blocks', 'f_bsize', 'f_favail', 'f_ffree', 'f_files', 'f_flag', 'f_frsize', 'f_namemax')}

    def open(self, path, flags):
        if flags & os.O_TRUNC:
            self._writable()
        return os.open(self._path(path), flags)

    def read(self, path, length, offset, fh):
        return os.pread(fh, length, offset)

    def flush(self, path, fh):
        return 0

    def release(self, path, fh):
        return os.close(fh)

    # Changes.
    def create(self, path, mode, fi=None):
        self._writable()
        return os.open(self._path(path), os.O_RDWR | os.O_CREAT, mode)

    def write(self, path, data, offset, fh):
        self._writable()
        return os.pwrite(fh, data, offset)

    def truncate(self, path, length, fh=None):
        self._writable()
        if fh is not None:
            os.ftruncate(fh, length)
        else:
            os.truncate(self._path(path), length)

    def fsync(self, path, datasync, fh):
        self._writable()
        if datasync:
            os.fdatasync(fh)
        else:
            os.fsync(fh)

    def chmod(self, path, mode):
        self._writable()
        os.chmod(self._path(path), mode)

    def chown(self, path, uid, gid):
        self._writable()
        os.chown(self._path(path), uid, gid)

    def utimens(self, path, times=None):
        self._writable()
        os.utime(self._path(path), times)

    def mkdir(self, path, mode):
        self._writable()
        os.mkdir(self._path(path), mode)

    def rmdir(self, path):
        self._writable()
        os.rmdir(self._path(path))

    def unlink(self, path):
        self._writable()
        os.unlink(self._path(path))

    def rename(self, old, new):
        self._writable()
        os.rename(self._path(old), self._path(new))


if __name__ == '__main__':
    if len(sys.argv) != 4:
        sys.exit('usage: errorfs.py BACKING MOUNTPOINT CONTROL')
    FUSE(ErrorFS(sys.argv[1], sys.argv[3]), sys.argv[2], foreground=True, nothreads=False)
