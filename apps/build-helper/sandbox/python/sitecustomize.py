"""Loaded by Python at start-up in the build helper's sandbox (PYTHONPATH).

debspawn copies a build's results out of its build directory with
``os.path.isfile`` and ``shutil.copy``, both of which follow symbolic links,
as root. The sandbox already hides every secret of the host; this makes the
attempt itself visible: before debspawn retrieves artifacts, any entry it
would take that is not a regular file (a link, a device, a FIFO, a socket)
ends the run with exit code 65 and the line the builder turns into the job's
failure reason. Nothing has been copied by then, and the build's container
has exited, so nothing can change the directory between the check and the
copy.
"""

import glob
import os
import stat
import sys

REFUSED = 'spark-build-helper: refused build: '
EXIT_REFUSED_OUTPUT = 65


def _kind(mode):
    if stat.S_ISLNK(mode):
        return 'a symbolic link'
    if stat.S_ISFIFO(mode):
        return 'a FIFO'
    if stat.S_ISSOCK(mode):
        return 'a socket'
    if stat.S_ISBLK(mode) or stat.S_ISCHR(mode):
        return 'a device'
    return None


def check_build_output(src_dir):
    for path in sorted(glob.glob(os.path.join(glob.escape(src_dir), '*.*'))):
        kind = _kind(os.lstat(path).st_mode)
        if kind is None:
            continue
        name = os.path.basename(path)
        what = '{} -> {}'.format(name, os.readlink(path)) if kind == 'a symbolic link' else name
        sys.stdout.flush()
        print('{}build output holds {}: {}'.format(REFUSED, kind, what), file=sys.stderr, flush=True)
        raise SystemExit(EXIT_REFUSED_OUTPUT)


def _install():
    try:
        from debspawn import osbase
    except ImportError:
        return  # not debspawn's Python (or a stand-in runs): nothing to guard
    original = getattr(osbase.OSBase, 'retrieve_artifacts', None)
    if original is None:
        raise SystemExit('spark-build-helper: this debspawn has no OSBase.retrieve_artifacts; '
                         'the helper cannot check its build output, refusing to run it')

    def retrieve_artifacts(self, src_dir, *args, **kwargs):
        check_build_output(src_dir)
        return original(self, src_dir, *args, **kwargs)

    osbase.OSBase.retrieve_artifacts = retrieve_artifacts


_install()
