"""File helpers shared by every stage: atomic writes, strict JSON, forgiving-but-strict reads.

Writing. Everything memsim writes goes to a temporary name beside its target
(``.NAME.<pid>-<token>.tmp``) and is renamed into place, so an interrupted or failed
command never leaves a half-written file behind; a folder that must appear whole (a run)
is built as a temporary sibling and renamed into place (:func:`staged_dir`). Temporary
names carry the writer's process id: a later write removes those whose process is gone
(a ``kill -9`` leaves them). Files honour the umask. A target that exists and is a
symbolic link, a device, a FIFO or a socket is refused: memsim replaces only regular
files and folders.

While a command runs under :func:`track_outputs` (the CLI does), every file and folder
that memsim creates is recorded, and :meth:`Outputs.remove` takes them away again when the
command fails: nothing is left half-written.

Reading. :func:`read_text` reads only regular files (a FIFO or ``/dev/zero`` is refused
before it is opened) and :func:`load_yaml` enforces the YAML limits of
:mod:`memsim.limits`: file size, nesting depth, nodes after alias expansion, 64-bit
integers, and no key given twice.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import math
import os
import re
import secrets
import shutil
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import yaml

from memsim import limits
from memsim.errors import UserError

__all__ = [
    "Outputs",
    "track_outputs",
    "record_output",
    "target_of",
    "forget_output",
    "check_output",
    "check_input",
    "make_dirs",
    "atomic_path",
    "staged_dir",
    "remove_stale",
    "is_temp_name",
    "die_with_parent",
    "in_worker",
    "check_spawn_safe",
    "unguarded_main_call",
    "write_text_atomic",
    "read_text",
    "load_yaml",
    "load_yaml_mapping",
    "format_pydantic_error",
    "jsonable",
    "dumps_json",
]


# --------------------------------------------------------------------------- what a command made
class Outputs:
    """The files and folders one command created, in order (see :func:`track_outputs`)."""

    def __init__(self) -> None:
        self.created: list[Path] = []
        self.kept: list[Path] = []
        self._lock = threading.Lock()  # run_study writes Parquet on a second thread

    def _is_kept(self, path: Path) -> bool:
        return any(k == path or k in path.parents for k in self.kept)

    def add(self, path: Path) -> None:
        path = Path(path)
        with self._lock:
            if not self._is_kept(path):
                self.created.append(path)

    def discard(self, path: Path) -> None:
        """Stop tracking ``path`` (it is gone, or renamed away)."""
        path = Path(path)
        with self._lock:
            self.created = [p for p in self.created if p != path]

    def forget(self, path: Path) -> None:
        """Keep ``path`` and everything under it, now and later, whatever happens."""
        path = Path(path)
        with self._lock:
            self.kept.append(path)
            self.created = [p for p in self.created if not self._is_kept(p)]

    def remove(self) -> list[Path]:
        """Remove everything recorded, newest first; the paths removed."""
        gone = []
        with self._lock:
            paths, self.created = self.created[::-1], []
            kept = list(self.kept)
        for p in paths:
            if any(p in k.parents for k in kept):
                continue  # a folder this command made around resumable state: keep it
            try:
                if p.is_symlink() or p.is_file():
                    p.unlink()
                elif p.is_dir():
                    shutil.rmtree(p)
                else:
                    continue
            except OSError:
                continue  # best effort: the command is failing already
            gone.append(p)
        return gone


_OUTPUTS: Outputs | None = None


@contextlib.contextmanager
def track_outputs() -> Iterator[Outputs]:
    """Record every file and folder memsim creates inside the block (process-wide)."""
    global _OUTPUTS
    previous, _OUTPUTS = _OUTPUTS, Outputs()
    try:
        yield _OUTPUTS
    finally:
        _OUTPUTS = previous


def record_output(path: str | os.PathLike[str]) -> None:
    """Note that the running command created ``path`` (no-op outside :func:`track_outputs`)."""
    if _OUTPUTS is not None:
        _OUTPUTS.add(Path(path))


def _discard_output(path: Path) -> None:
    if _OUTPUTS is not None:
        _OUTPUTS.discard(path)


def forget_output(path: str | os.PathLike[str]) -> None:
    """Keep ``path`` even if the command fails (resumable state: a sweep, a calibration log)."""
    if _OUTPUTS is not None:
        _OUTPUTS.forget(Path(path))


# --------------------------------------------------------------------------- paths
_KINDS = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _special(mode: int) -> str | None:
    for test, name in _KINDS:
        if test(mode):
            return name
    return None


def check_output(path: str | os.PathLike[str], kind: str | None = None) -> bool:
    """Refuse an output path memsim must not replace; True when it exists.

    ``kind``: ``"file"`` or ``"dir"`` (what will be written there), or None (either).
    A symbolic link, a device, a FIFO or a socket is refused whatever ``kind``.
    """
    p = Path(path)
    try:
        st = os.lstat(p)
    except FileNotFoundError:
        return False
    except NotADirectoryError:
        raise UserError("a parent of this path is a file, not a folder", path=p) from None
    except OSError as exc:
        raise UserError(f"cannot inspect: {exc.strerror}", path=p) from None
    if stat.S_ISLNK(st.st_mode):
        raise UserError(
            "is a symbolic link; memsim writes only to regular files and folders "
            "(give the path it points to, or another path)",
            path=p,
        )
    special = _special(st.st_mode)
    if special:
        raise UserError(f"is {special}; memsim writes only regular files and folders", path=p)
    if kind == "file" and stat.S_ISDIR(st.st_mode):
        raise UserError("is a folder, expected a file", path=p)
    if kind == "dir" and not stat.S_ISDIR(st.st_mode):
        raise UserError("is a file, expected a folder", path=p)
    return True


def check_input(path: str | os.PathLike[str], what: str = "file") -> os.stat_result:
    """Stat an input file without opening it: it must exist and be a regular file.

    A FIFO or a device would block or never end when read: refused here, before ``open``.
    """
    p = Path(path)
    try:
        st = p.stat()
    except (FileNotFoundError, NotADirectoryError):
        raise UserError(f"no such {what}", path=p) from None
    except OSError as exc:
        raise UserError(f"cannot read {what}: {exc.strerror}", path=p) from None
    if stat.S_ISDIR(st.st_mode):
        raise UserError(f"is a directory, expected a {what}", path=p)
    special = _special(st.st_mode)
    if special:
        raise UserError(f"is {special}, expected a {what} (a regular file)", path=p)
    return st


def make_dirs(path: str | os.PathLike[str]) -> Path:
    """``mkdir -p``, recording the topmost folder it creates (see :func:`track_outputs`)."""
    p = Path(path)
    missing = []
    q = p
    while not q.exists() and not q.is_symlink() and q != q.parent:
        missing.append(q)
        q = q.parent
    if q.exists() and not q.is_dir():
        raise UserError("is a file, so nothing can be created under it", path=q)
    p.mkdir(parents=True, exist_ok=True)
    if missing:
        record_output(missing[-1])
    return p


_TOKEN = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)-[0-9a-f]{8}\.(?P<ext>tmp|new|old)$")
_LEGACY_TMP = re.compile(r"^\.(?P<name>.+)\.[A-Za-z0-9_]{8}\.tmp$")  # tempfile.mkstemp's names


def is_temp_name(name: str) -> bool:
    """True for the name of one of memsim's temporary files or folders (this or an earlier
    version)."""
    return bool(_TOKEN.match(name) or _LEGACY_TMP.match(name))


def target_of(path: str | os.PathLike[str]) -> str:
    """The path a temporary name of memsim's stands for (``d/.x.csv.<pid>-<tok>.tmp`` ->
    ``d/x.csv``), so that an error names what the user asked for; any other path as is."""
    p = Path(path)
    m = _TOKEN.match(p.name)
    return str(p.parent / m["name"]) if m else str(path)


def _temp_name(name: str, ext: str) -> str:
    # keep the whole name within NAME_MAX (255 bytes) whatever the target's length
    return f".{name[:200]}.{os.getpid()}-{secrets.token_hex(4)}.{ext}"


def die_with_parent(parent: int) -> None:
    """In a worker process: be killed when ``parent`` dies (Linux ``PR_SET_PDEATHSIG``).

    A pool's workers wait on their parent's queue; a parent killed outright (``kill``, an
    out-of-memory kill) would leave them waiting, holding their memory, for ever. Elsewhere
    (no ``prctl``) this does nothing. A parent that died before the call is seen here too.
    """
    import signal

    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before the line above took effect
        os._exit(1)


def spawn_context():
    """The ``spawn`` multiprocessing context of memsim's worker pools: its processes start
    with SIGINT blocked, so that a Ctrl-C is the parent's alone (:mod:`memsim._spawn`).

    Checks first that the script being run can start workers (:func:`check_spawn_safe`)."""
    from memsim._spawn import CONTEXT

    check_spawn_safe()
    return CONTEXT


def _rerun_main() -> tuple[dict, str] | None:
    """The ``__main__`` module's namespace and file where a spawned worker runs it again.

    The rule of :mod:`multiprocessing.spawn`: a module run by name (``python -m``) is run
    again unless it is a package's ``__main__``; a script by path unless it is IPython's."""
    import sys

    main = sys.modules.get("__main__")
    if main is None:
        return None
    name = getattr(getattr(main, "__spec__", None), "name", None)
    if name is not None:
        if name == "__main__" or name.endswith(".__main__"):
            return None
        path = getattr(main.__spec__, "origin", None)
    else:
        path = getattr(main, "__file__", None)
        if path and os.path.splitext(os.path.basename(path))[0] == "ipython":
            return None
    if not path or not os.path.isfile(path):
        return None
    return vars(main), os.path.abspath(path)


def _names_main(node) -> bool:
    """Whether ``node`` holds a comparison of ``__name__`` with ``"__main__"``."""
    import ast

    for n in ast.walk(node):
        if isinstance(n, ast.Compare):
            parts = list(ast.walk(n))
            if any(isinstance(p, ast.Name) and p.id == "__name__" for p in parts) and any(
                isinstance(p, ast.Constant) and p.value == "__main__" for p in parts
            ):
                return True
    return False


def unguarded_main_call() -> tuple[str, int] | None:
    """Where the script run as ``__main__`` calls into this stack outside its main guard.

    memsim's worker pools start their processes with ``spawn``, and each imports the script
    that is ``__main__`` again before it takes any work. A call made from the script's top
    level, outside ``if __name__ == "__main__":``, is then made again in every worker while
    it starts, where Python refuses to start processes; the worker dies unread, and the
    parent, writing the pool's start-up data to it, waits for ever. Returns the script's path
    and the line of its top-level statement that leads here, or None where that statement is
    under such a guard, or the main module is not run again (a notebook, ``python -c``, a
    package's ``__main__``), or its source cannot be read.
    """
    import ast
    import sys
    import tokenize

    found = _rerun_main()
    if found is None:
        return None
    namespace, path = found
    frame = sys._getframe(1)
    while frame is not None:
        code = frame.f_code
        if (
            frame.f_globals is namespace
            and code.co_name == "<module>"
            and os.path.abspath(code.co_filename) == path
        ):
            break
        frame = frame.f_back
    if frame is None:
        return None
    line = frame.f_lineno
    try:
        with tokenize.open(path) as fh:
            tree = ast.parse(fh.read(), path)
    except (OSError, SyntaxError, ValueError):
        return None
    for node in tree.body:
        if node.lineno <= line <= (node.end_lineno or node.lineno):
            return None if _names_main(node) else (path, line)
    return None


def check_spawn_safe() -> None:
    """Refuse to start worker processes from a script's unguarded top level (a
    :class:`UserError` naming the script and line), rather than wait for ever on workers that
    cannot start (:func:`unguarded_main_call`)."""
    where = unguarded_main_call()
    if where is not None:
        path, line = where
        raise UserError(
            f"line {line} starts memsim's worker processes from the script's top level, and "
            "each worker imports the script again: put that code under "
            "'if __name__ == \"__main__\":', or pass workers=1",
            path=path,
        )


def in_worker(parent: int, init=None, *args) -> None:
    """A process pool's initializer: :func:`die_with_parent`, then ``init(*args)`` if given."""
    die_with_parent(parent)
    if init is not None:
        init(*args)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # another user's process, or cannot tell: keep its files
    return True


def remove_stale(folder: str | os.PathLike[str], name: str | None = None) -> list[Path]:
    """Remove the temporary files and folders that killed writers left in ``folder``.

    Only memsim's own temporary names (``.NAME.<pid>-<token>.tmp|new|old``) whose process
    is gone, and the ``.NAME.XXXXXXXX.tmp`` names of earlier versions; ``name``: only
    those of that target.
    """
    folder = Path(folder)
    gone: list[Path] = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return gone
    for p in entries:
        m = _TOKEN.match(p.name)
        stale = m is not None and not _alive(int(m["pid"]))
        if m is None:
            m = _LEGACY_TMP.match(p.name)
            stale = m is not None
        if not stale or (name is not None and m["name"][:200] != name[:200]):
            continue
        try:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
            gone.append(p)
        except OSError:
            pass
    return gone


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    The temporary file is created with mode 0666 less the umask, as ``open`` would, so the
    renamed file has the permissions any other program would give it.
    """
    path = Path(path)
    existed = check_output(path, "file")
    make_dirs(path.parent)
    tmp_path = path.parent / _temp_name(path.name, "tmp")
    fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    os.close(fd)
    try:
        try:
            yield tmp_path
        except OSError as exc:  # a full disk, a size limit: name the file (pyarrow does not)
            reason = exc.strerror or " ".join(str(exc).split()) or type(exc).__name__
            raise UserError(f"cannot write: {reason}", path=path) from None
        if check_output(path, "file") and not existed:
            existed = True  # someone else created it meanwhile: still ours to replace
        os.replace(tmp_path, path)
        if not existed:
            record_output(path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()
    folder = path.parent.resolve()
    if folder not in _CLEANED:  # once per folder and process: a sweep writes thousands here
        _CLEANED.add(folder)
        remove_stale(folder)


_CLEANED: set[Path] = set()  # folders whose stale temporary files this process removed


def staged_dir(
    out: str | os.PathLike[str], replaceable: Callable[[Path], str | None] | None = None
) -> contextlib.AbstractContextManager[Path]:
    """A folder that appears whole or not at all.

    Yields an empty temporary sibling of ``out`` (``.NAME.<pid>-<token>.new``); when the
    block succeeds it is renamed to ``out``, replacing an earlier folder there whole. A
    failure (or a kill) never touches ``out``. ``replaceable(out)`` says why an existing
    ``out`` must not be replaced (None: it may), checked before the block and again
    before the swap; without it only an empty folder is replaced.
    """
    return _Staged(Path(out), replaceable or _only_empty)


def check_staged_dir(
    out: str | os.PathLike[str], replaceable: Callable[[Path], str | None] | None = None
) -> None:
    """Refuse now (one-line UserError) an ``out`` that :func:`staged_dir` would refuse, so that
    a command can say so before it prints or computes anything; creates nothing."""
    _Staged(Path(out), replaceable or _only_empty).check()


def _only_empty(out: Path) -> str | None:
    return None if not any(out.iterdir()) else "is a folder that is not empty"


class _Staged(contextlib.AbstractContextManager):
    def __init__(self, out: Path, replaceable: Callable[[Path], str | None]) -> None:
        self.out, self.replaceable = out, replaceable
        self.tmp: Path | None = None

    def _check(self) -> bool:
        if not check_output(self.out, "dir"):
            return False
        why = self.replaceable(self.out)
        if why:
            raise UserError(f"{why}; use another output folder or remove it", path=self.out)
        return True

    def check(self) -> None:
        here = Path.cwd().resolve()
        target = self.out.resolve()
        if target == here or target in here.parents:
            raise UserError(
                "is the current folder or holds it; give a folder inside it", path=self.out
            )
        self._check()

    def __enter__(self) -> Path:
        self.check()
        make_dirs(self.out.parent)
        remove_stale(self.out.parent, self.out.name)
        self.tmp = self.out.parent / _temp_name(self.out.name, "new")
        os.mkdir(self.tmp, 0o777)
        record_output(self.tmp)
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        tmp = self.tmp
        assert tmp is not None
        if exc_type is not None:
            shutil.rmtree(tmp, ignore_errors=True)
            _discard_output(tmp)
            if isinstance(exc, UserError) and str(tmp) in str(exc):  # name the real path
                raise UserError(str(exc).replace(str(tmp), str(self.out))) from None
            return None
        try:
            existed = self._check()
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            _discard_output(tmp)
            raise
        old = None
        if existed:
            # a rename cannot replace a folder that holds files: move the old one aside first;
            # a kill between the two renames leaves no `out` (and two hidden, stale siblings)
            old = self.out.parent / _temp_name(self.out.name, "old")
            os.rename(self.out, old)
        os.rename(tmp, self.out)
        _discard_output(tmp)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        else:
            record_output(self.out)
        return None


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


# --------------------------------------------------------------------------- reading
def read_text(
    path: str | os.PathLike[str], what: str = "file", max_bytes: int | None = None
) -> str:
    """Read a UTF-8 text file (BOM allowed), turning OS errors into one-line UserErrors.

    Only a regular file is opened; ``max_bytes`` refuses a larger one before reading it.
    """
    p = Path(path)
    st = check_input(p, what)
    if max_bytes is not None and st.st_size > max_bytes:
        raise UserError(
            f"{what} of {st.st_size:,} bytes is larger than the limit of {max_bytes:,}", path=p
        )
    try:
        with open(p, "rb") as fh:
            raw = fh.read() if max_bytes is None else fh.read(max_bytes + 1)
    except OSError as exc:
        raise UserError(f"cannot read {what}: {exc.strerror}", path=p) from None
    if max_bytes is not None and len(raw) > max_bytes:  # grew while we looked
        raise UserError(f"{what} is larger than the limit of {max_bytes:,} bytes", path=p)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UserError(f"not UTF-8 text (byte {exc.start})", path=p) from None


# libyaml's parser when PyYAML was built with it (ten times faster); the limits hold either way
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _LimitedLoader(_SAFE_LOADER):
    """PyYAML's safe loader with 64-bit integers and no key given twice."""

    def construct_yaml_int(self, node):  # type: ignore[override]
        text = str(node.value).replace("_", "")
        if len(text) > 80:  # far beyond 64 bits in any base; int() of it is slow or refused
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"an integer of {len(text):,} digits; integers must fit in 64 bits",
                node.start_mark,
            )
        value = super().construct_yaml_int(node)
        if not limits.INT_MIN <= value <= limits.INT_MAX:
            raise yaml.constructor.ConstructorError(
                None, None, "an integer larger than 64 bits", node.start_mark
            )
        return value

    def construct_mapping(self, node, deep=False):  # type: ignore[override]
        if isinstance(node, yaml.MappingNode):
            seen = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *a`: may be overridden
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    dup = key in seen
                except TypeError:  # an unhashable key: the normal constructor reports it
                    break
                if dup:
                    raise _Duplicate(key_node.start_mark.line + 1, key)
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


_LimitedLoader.add_constructor("tag:yaml.org,2002:int", _LimitedLoader.construct_yaml_int)


class _Duplicate(Exception):
    def __init__(self, line: int, key) -> None:
        super().__init__(f"line {line}: key '{key}' is given twice")


def _check_events(text: str) -> None:
    """Nesting depth and size, from the event stream (flat: no recursion, no construction)."""
    depth = events = 0
    for ev in yaml.parse(text, Loader=_SAFE_LOADER):
        events += 1
        if isinstance(ev, yaml.CollectionStartEvent):
            depth += 1
            if depth > limits.YAML_MAX_DEPTH:
                raise UserError(
                    f"nested more than {limits.YAML_MAX_DEPTH} levels deep "
                    f"(line {ev.start_mark.line + 1})"
                )
        elif isinstance(ev, yaml.CollectionEndEvent):
            depth -= 1
        if events > limits.YAML_MAX_NODES:
            raise UserError(f"more than {limits.YAML_MAX_NODES:,} YAML nodes")


def _check_expansion(root) -> None:
    """Nodes and depth once every alias is expanded (an alias is a second path to a node)."""
    size: dict[int, int] = {}
    height: dict[int, int] = {}
    active: set[int] = set()
    stack = [(root, False)]
    while stack:  # post-order, iterative: alias chains can be far deeper than the stack
        node, done = stack.pop()
        key = id(node)
        if done:
            active.discard(key)
            kids = _children(node)
            size[key] = 1 + sum(size[id(k)] for k in kids)
            height[key] = 1 + max((height[id(k)] for k in kids), default=0)
            if size[key] > limits.YAML_MAX_NODES:
                raise UserError(
                    f"aliases expand to more than {limits.YAML_MAX_NODES:,} YAML nodes "
                    f"(line {node.start_mark.line + 1})"
                )
            if height[key] > limits.YAML_MAX_DEPTH + 1:
                raise UserError(
                    f"aliases nest more than {limits.YAML_MAX_DEPTH} levels deep "
                    f"(line {node.start_mark.line + 1})"
                )
            continue
        if key in size:
            continue
        if key in active:
            raise UserError(f"a recursive alias (line {node.start_mark.line + 1})")
        active.add(key)
        stack.append((node, True))
        for k in _children(node):
            if id(k) in active:
                raise UserError(f"a recursive alias (line {k.start_mark.line + 1})")
            if id(k) not in size:
                stack.append((k, False))


def _children(node) -> list:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def load_yaml(text: str, path: str | os.PathLike[str] | None = None):
    """Parse YAML text within memsim's limits (:mod:`memsim.limits`); any problem is one line.

    Limits: nesting depth, nodes after alias expansion (an alias bomb is refused before it
    is expanded), recursive aliases, integers beyond 64 bits, a key given twice.
    """
    try:
        _check_events(text)
        loader = _LimitedLoader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            _check_expansion(node)
            return loader.construct_document(node)
        finally:
            loader.dispose()
    except UserError as exc:
        raise UserError(str(exc), path=path) from None
    except _Duplicate as exc:
        raise UserError(str(exc), path=path) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or "invalid YAML"
        if "nesting depth" in problem:  # libyaml's own bound (1000) met before ours
            line = f" (line {mark.line + 1})" if mark else ""
            raise UserError(
                f"nested more than {limits.YAML_MAX_DEPTH} levels deep{line}", path=path
            ) from None
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise UserError(f"not valid YAML{where}: {problem}", path=path) from None


def load_yaml_mapping(path: str | os.PathLike[str], what: str = "YAML file") -> dict:
    """Load a YAML file that must hold a mapping at its top level (within the YAML limits)."""
    text = read_text(path, what, max_bytes=limits.YAML_MAX_BYTES)
    if not text.strip():
        raise UserError(f"empty {what}", path=path)
    data = load_yaml(text, path)
    if not isinstance(data, dict):
        raise UserError(f"top level must be a mapping, got {type(data).__name__}", path=path)
    return data


def _tags(tp) -> set:
    """The names a union member answers to in an error location: its ``kind`` literal(s)
    and any pydantic ``Tag``."""
    import typing

    names = set()
    if typing.get_origin(tp) is typing.Annotated:
        inner, *meta = typing.get_args(tp)
        names |= {getattr(m, "tag", None) for m in meta} - {None}
        tp = inner
    fields = getattr(tp, "model_fields", None)
    if fields and "kind" in fields:
        names |= {a for a in typing.get_args(fields["kind"].annotation) if isinstance(a, str)}
    return names


def _unwrap(tp):
    import typing

    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    return tp


def _child(tp, part):
    """The type found at ``part`` (a field name, a list index, a union tag) inside ``tp``."""
    import types
    import typing

    tp = _unwrap(tp)
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        members = [m for m in typing.get_args(tp) if m is not type(None)]
        for m in members:  # a discriminated union names the member it tried
            if part in _tags(m):
                return _unwrap(m)
        for m in members:
            found = _child(m, part)
            if found is not None:
                return found
        return None
    if isinstance(part, int) and origin in (list, tuple):
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            return args[part] if part < len(args) else None
        return args[0] if args else None
    if origin is dict:
        return typing.get_args(tp)[1]
    fields = getattr(tp, "model_fields", None)
    if fields is not None and part in fields:
        return fields[part].annotation
    return None


def field_names_at(model, loc: tuple) -> list[str]:
    """The field names allowed in the mapping that holds ``loc[-1]``, inside ``model`` (a
    pydantic model class), following pydantic's error location (list indices, union tags);
    [] when the location leads nowhere known."""
    tp = model
    for part in loc[:-1]:
        tp = _child(tp, part)
        if tp is None:
            return []
    tp = _unwrap(tp)
    import types
    import typing

    if typing.get_origin(tp) in (typing.Union, types.UnionType):  # a union: any member's
        names: list[str] = []
        for m in typing.get_args(tp):
            names += [n for n in getattr(_unwrap(m), "model_fields", {}) if n not in names]
        return names
    return list(getattr(tp, "model_fields", {}))


def unknown_field_message(errors: list[dict], loc: tuple, model=None) -> str:
    """An unknown key, with the closest valid names at its place as suggestions.

    With ``model`` (the pydantic model class validated), the valid names are the fields of
    the mapping that holds the key; without it, the required siblings reported missing (a
    typo of a required field shows up twice: unknown and missing).
    """
    missing = [
        str(e["loc"][-1])
        for e in errors
        if e.get("type") == "missing" and tuple(e["loc"][:-1]) == tuple(loc[:-1])
    ]
    valid = field_names_at(model, loc) if model is not None else []
    names = list(dict.fromkeys(missing + valid))
    close = difflib.get_close_matches(str(loc[-1]), names, n=2, cutoff=0.6)
    if close:
        return f"unknown field (did you mean {' or '.join(repr(c) for c in close)}?)"
    if valid and len(valid) <= 10:
        return f"unknown field (valid here: {', '.join(valid)})"
    return "unknown field (check for a typo)"


def format_pydantic_error(exc, path: str | os.PathLike[str], model=None) -> UserError:
    """Turn a pydantic ValidationError into one line naming the first bad field path.

    An unknown key is reported first (a typo shows up twice, as an unknown key and as a
    missing one), with the closest valid names at that place as suggestions (``model``: the
    model class validated, whose fields are the valid names).
    """
    errors = exc.errors()
    unknown = [e for e in errors if e.get("type") == "extra_forbidden"]
    first = unknown[0] if unknown else errors[0]
    loc = tuple(first.get("loc", ()))
    msg = first.get("msg", "invalid").removeprefix("Value error, ")
    if first.get("type") == "extra_forbidden":
        msg = unknown_field_message(errors, loc, model)
    elif first.get("type") == "missing":
        msg = "required field missing"
    where = ".".join(str(x) for x in loc) or "(top level)"
    n = len(errors) - 1
    extra = f" (and {n} more problem{'s' if n > 1 else ''})" if n else ""
    return UserError(f"{where}: {msg}{extra}", path=path)


def jsonable(x):
    """A copy of nested dicts/lists with numpy scalars and arrays as Python numbers and lists,
    and NaN/inf as None (JSON has no NaN)."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if hasattr(x, "tolist") and hasattr(x, "dtype"):  # numpy arrays and scalars
        x = x.tolist()
        if isinstance(x, list):
            return [jsonable(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def dumps_json(obj, *, newline: bool = False) -> str:
    """Strict JSON (NaN written as null) indented by one space, as memsim writes summaries."""
    return json.dumps(jsonable(obj), indent=1, allow_nan=False) + ("\n" if newline else "")
