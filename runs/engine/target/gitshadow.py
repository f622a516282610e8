"""The shadow git directory git is pointed at: our configuration, the refs, the object store.

Each git call gets a private directory that holds a configuration we write, a copy of HEAD and
the refs, and the object store. The repository's config (with its include/includeIf, filter
and diff drivers, fsmonitor, pager, hook and program settings), hooks/, info/ (attributes,
excludes, grafts) and objects/info/alternates are simply not there, so nothing the repository
configures can run or name a file for git to read.

git opens the object files itself, so the descriptor walk cannot reach inside it. Instead git
is only ever given files this process opened and checked through the target's confinement
(no link on the way, a regular file, one link, the root's device):
- each file of objects/pack (and the commit-graph, the index and a split index's other half)
  is opened here and held open for the call; the shadow names it by a link to
  `/proc/self/fd/N`, and the descriptor is passed to git under the same number, so git opens
  the very inode that was checked, whatever the path leads to by then;
- loose objects (small, and far too many to hold open or to copy one file each) are read
  through checked descriptors, hashed (a file whose object is not the one its name says is
  left out: git itself would trust the name) and written into one pack beside the shadow,
  which git indexes before the call.
Swapping `.git/objects` or `objects/pack` for a link to another repository therefore makes the
call refuse (the walk meets the link), or changes nothing git reads.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import stat
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from runs.engine.target.confinement import (
    Confinement,
    HardLinked,
    NoSuchFile,
    NotRegular,
    Refused,
)
from runs.engine.target.gitlayout import (
    PACKED_REFS_LIMIT,
    REF_PART,
    SYMREF,
    GitLayout,
    GitRefused,
    checked_head,
    inside,
    read_small,
)

MAX_REFS = 50_000
MAX_OBJECT_ENTRIES = 500_000
MAX_LOOSE_BYTES = 256 * 1024 * 1024  # loose objects packed for one call; `git gc` packs them
MAX_LOOSE_OBJECT = 64 * 1024 * 1024  # one loose object, inflated; a larger one is left out
MAX_PINNED = 1000  # files held open for one call
PINNED = "/proc/self/fd"  # in git's process: the very file this process opened and checked
PINNED_INDEX = "index.pinned"
LOOSE_DIR = re.compile(r"[0-9a-f]{2}")
LOOSE_PACK = "pack-loose.pack"  # in its own object folder, indexed before git runs
OBJECT_TYPES = {b"commit": 1, b"tree": 2, b"blob": 3, b"tag": 4}
NOTHING_OUTSIDE = "nothing outside the target is read"
LINK_OUT = f"holds a link or special file: refused, {NOTHING_OUTSIDE}"

# Our whole configuration: the repository's own file is never read.
SHADOW_CONFIG = """\
[core]
\trepositoryformatversion = {version}
\tbare = true
\tfsmonitor = false
\thooksPath = /dev/null
\tpager = cat
\tattributesFile = /dev/null
\texcludesFile = /dev/null
\tquotePath = true
\tuntrackedCache = false
\tcommitGraph = true
[gc]
\tauto = 0
[diff]
\trenames = true
\tnoprefix = false
\tmnemonicPrefix = false
\tsubmodule = short
[log]
\tshowSignature = false
\tmailmap = false
\tdecorate = false
[mailmap]
\tfile = /dev/null
\tblob =
[color]
\tui = false
[advice]
\tdetachedHead = false
"""
SHA256_EXTENSION = "[extensions]\n\tobjectFormat = sha256\n"


@dataclass
class Pins:
    """Descriptors of checked files held open for one call (git gets them by number)."""

    fds: list[int] = field(default_factory=list)
    closers: list[Callable[[], None]] = field(default_factory=list)
    objects: int = 0  # object-store entries seen
    object_format: str = "sha1"
    loose: LoosePack | None = None  # the loose objects, packed

    def hold(self, fd: int, link: Path) -> None:
        self.fds.append(fd)
        if len(self.fds) > MAX_PINNED:
            raise GitRefused(f"the repository needs more than {MAX_PINNED} open files: refused")
        link.symlink_to(f"{PINNED}/{fd}")

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds.clear()
        for close in self.closers:
            close()


def build_shadow(layout: GitLayout, shadow: Path, pins: Pins) -> None:
    """Fill the empty directory `shadow` with a git directory git may read safely; the files
    it names by descriptor are held in `pins` until the caller closes them."""
    if not os.path.isdir(PINNED):
        raise GitRefused("git history needs /proc to hand git the checked files: not available")
    pins.object_format = layout.object_format
    version = 1 if layout.object_format == "sha256" else 0
    config = SHADOW_CONFIG.format(version=version)
    if layout.object_format == "sha256":
        config += SHA256_EXTENSION
    (shadow / "config").write_text(config)
    (shadow / "HEAD").write_bytes(checked_head(layout))
    for name in ("packed-refs", "shallow"):
        source = layout.common_dir / name
        if os.path.lexists(source):
            (shadow / name).write_bytes(read_small(layout.confine, source, PACKED_REFS_LIMIT))
    _copy_refs(layout, shadow / "refs")
    _objects(layout, shadow / "objects", pins)
    with _folder(layout.confine, layout.git_dir, "the git directory") as fd:
        for name, info in _entries(fd):
            # Not named `index` in the shadow: git reads it only when a call asks for it.
            if name == "index" and stat.S_ISREG(info.st_mode):
                pins.hold(_checked(layout.confine, fd, name), shadow / PINNED_INDEX)
            elif name.startswith("sharedindex.") and stat.S_ISREG(info.st_mode):
                pins.hold(_checked(layout.confine, fd, name), shadow / name)  # a split index


def _copy_refs(layout: GitLayout, destination: Path) -> None:
    """Loose refs that are plain, small files with a valid name and value; others are skipped."""
    destination.mkdir()
    (destination / "heads").mkdir()
    (destination / "tags").mkdir()
    refs = layout.common_dir / "refs"
    if refs.is_symlink():
        refs = inside(layout.root, refs, "refs/")
    copied = [0]
    confine = layout.confine
    try:
        with confine.directory(refs, listing=True) as fd:
            _copy_ref_folder(confine, fd, destination, layout.oid_length, copied)
    except NoSuchFile:
        return
    except Refused as exc:
        raise GitRefused(f"refs/ cannot be read: {exc}") from None


def _copy_ref_folder(
    confine: Confinement, fd: int, target: Path, oid_length: int, copied: list[int]
) -> None:
    for name, info in _entries(fd):
        if not REF_PART.fullmatch(name) or name.startswith("."):
            continue
        if stat.S_ISDIR(info.st_mode):
            child = confine.open_dir_at(fd, name, listing=True)
            if child is None:
                continue
            try:
                (target / name).mkdir(exist_ok=True)
                _copy_ref_folder(confine, child, target / name, oid_length, copied)
            finally:
                os.close(child)
        elif stat.S_ISREG(info.st_mode) and not name.endswith(".lock"):
            copied[0] += 1
            if copied[0] > MAX_REFS:
                raise GitRefused(f"more than {MAX_REFS} loose refs: refused")
            value = _ref_value(confine, fd, name, oid_length)
            if value is not None:
                (target / name).write_bytes(value)


def _ref_value(confine: Confinement, fd: int, name: str, oid_length: int) -> bytes | None:
    try:
        opened = confine.open_at(fd, name, name)
    except Refused:
        return None
    with os.fdopen(opened, "rb") as handle:
        raw = handle.read(4097)
    if SYMREF.fullmatch(raw) or re.fullmatch(rf"[0-9a-f]{{{oid_length}}}\n?".encode(), raw):
        return raw
    return None


def _objects(layout: GitLayout, destination: Path, pins: Pins) -> None:
    """The object store's plain parts; info/alternates (other repositories) is left out."""
    objects = inside(layout.root, layout.common_dir / "objects", "objects/")
    confine = layout.confine
    destination.mkdir()
    with _folder(confine, objects, "objects/") as fd:
        for name, info in _entries(fd):
            wanted = name in ("pack", "info") or LOOSE_DIR.fullmatch(name)
            if wanted and stat.S_ISLNK(info.st_mode):
                raise GitRefused(f"objects/{name} is a link: refused, {NOTHING_OUTSIDE}")
            if not stat.S_ISDIR(info.st_mode):
                continue
            if name == "pack":
                with _subfolder(confine, fd, name) as pack:
                    _pin_pack(confine, pack, destination / name, pins)
            elif LOOSE_DIR.fullmatch(name):
                with _subfolder(confine, fd, name) as loose:
                    _pack_loose(confine, loose, name, shadow_loose(destination.parent), pins)
            elif name == "info":
                with _subfolder(confine, fd, name) as info_fd:
                    _pin_graph(confine, info_fd, destination / name, pins)


def _pin_pack(confine: Confinement, fd: int, destination: Path, pins: Pins) -> None:
    destination.mkdir(exist_ok=True)
    for name, _ in _entries(fd):
        _count(pins, "pack")
        pins.hold(_checked(confine, fd, name, folder="pack"), destination / name)


def shadow_loose(shadow: Path) -> Path:
    """The object folder of the packed loose objects: beside the shadow, apart from the
    target's packs (whose names the target chooses)."""
    return shadow.parent / "loose-objects"


def _pack_loose(confine: Confinement, fd: int, folder: str, destination: Path, pins: Pins) -> None:
    for name, _ in _entries(fd):
        _count(pins, folder)
        if pins.loose is None:
            (destination / "pack").mkdir(parents=True)
            pins.loose = LoosePack(destination / "pack" / LOOSE_PACK, pins, pins.object_format)
        opened = _checked(confine, fd, name, folder=folder)
        with os.fdopen(opened, "rb") as source:
            pins.loose.count_bytes(os.fstat(opened).st_size)
            pins.loose.add(source.read(MAX_LOOSE_BYTES), f"{folder}{name}")


class LoosePack:
    """Loose objects written as one pack (version 2, whole objects, no deltas)."""

    def __init__(self, path: Path, pins: Pins, object_format: str) -> None:
        self.path = path
        self.object_format = object_format
        self.out = open(path, "xb")  # noqa: SIM115 (closed by finish, or by the session)
        self.out.write(bytes(12))  # the header, written once the count is known
        self.count = 0
        self.read = 0
        pins.closers.append(self.out.close)

    def count_bytes(self, size: int) -> None:
        self.read += size
        if self.read > MAX_LOOSE_BYTES:
            raise GitRefused(
                f"the loose objects are larger than {MAX_LOOSE_BYTES} bytes: refused "
                "(`git gc` packs them)"
            )

    def add(self, stored: bytes, oid: str) -> None:
        """One loose object's file, kept only when it inflates to a well-formed object whose
        hash is its name `oid` (git would read any object a file holds under that name)."""
        inflate = zlib.decompressobj()
        try:
            raw = inflate.decompress(stored, MAX_LOOSE_OBJECT + 64)
        except zlib.error:
            return
        head, _, data = raw.partition(b"\0")
        kind, _, size = head.partition(b" ")
        if kind not in OBJECT_TYPES or size != str(len(data)).encode() or inflate.unconsumed_tail:
            return
        if hashlib.new(self.object_format, raw).hexdigest() != oid:
            return  # another object under this one's name: left out, so git finds none
        self.out.write(_entry_header(OBJECT_TYPES[kind], len(data)) + zlib.compress(data, 1))
        self.count += 1

    def finish(self) -> bool:
        """Write the header and the checksum; False when there was nothing to pack."""
        self.out.seek(0)
        self.out.write(b"PACK" + struct.pack(">II", 2, self.count))
        self.out.close()
        if not self.count:
            self.path.unlink()
            return False
        digest = hashlib.new(self.object_format)
        with open(self.path, "rb") as packed:
            while chunk := packed.read(1 << 20):
                digest.update(chunk)
        with open(self.path, "ab") as packed:
            packed.write(digest.digest())
        return True


def _entry_header(kind: int, size: int) -> bytes:
    """A pack entry's type and size: 3 bits of type, then the size 4 and 7 bits at a time."""
    out = bytearray()
    byte = (kind << 4) | (size & 0x0F)
    size >>= 4
    while size:
        out.append(byte | 0x80)
        byte = size & 0x7F
        size >>= 7
    out.append(byte)
    return bytes(out)


def _pin_graph(confine: Confinement, fd: int, destination: Path, pins: Pins) -> None:
    """The commit-graph only speeds git up: anything odd about it leaves it out."""
    destination.mkdir()
    try:
        opened = confine.open_at(fd, "commit-graph", "objects/info/commit-graph")
    except Refused:
        return
    pins.hold(opened, destination / "commit-graph")


def _count(pins: Pins, folder: str) -> None:
    pins.objects += 1
    if pins.objects > MAX_OBJECT_ENTRIES:
        raise GitRefused(f"the object store has more than {MAX_OBJECT_ENTRIES} files: refused")


def _checked(confine: Confinement, fd: int, name: str, *, folder: str = "") -> int:
    """A descriptor of a checked plain file of the repository, or GitRefused saying why."""
    where = f"objects/{folder}/" if folder else ".git/"
    try:
        return confine.open_at(fd, name, f"{where}{name}")
    except (NotRegular, NoSuchFile):
        raise GitRefused(f"{where} {LINK_OUT}") from None
    except HardLinked as exc:
        raise GitRefused(
            f"{exc}; git history is not read (a clone made with --no-hardlinks, or "
            "`git repack -a -d` in this one, gives it files of its own)"
        ) from None
    except Refused as exc:
        raise GitRefused(str(exc)) from None


@contextlib.contextmanager
def _folder(confine: Confinement, real: Path, subject: str) -> Iterator[int]:
    """A readable descriptor of a folder of the repository, or GitRefused saying why."""
    with contextlib.ExitStack() as stack:
        try:
            fd = stack.enter_context(confine.directory(real, listing=True))
        except Refused as exc:
            raise GitRefused(f"{subject} cannot be read: {exc}") from None
        yield fd


@contextlib.contextmanager
def _subfolder(confine: Confinement, fd: int, name: str) -> Iterator[int]:
    child = confine.open_dir_at(fd, name, listing=True)
    if child is None:  # it was a folder a moment ago: swapped, or on another device
        raise GitRefused(f"objects/{name}/ {LINK_OUT}")
    try:
        yield child
    finally:
        os.close(child)


def _entries(fd: int) -> Iterator[tuple[str, os.stat_result]]:
    """(name, what it is without following a link) for each entry, by name."""
    with os.scandir(fd) as found:
        names = sorted(entry.name for entry in found)
    for name in names:
        try:
            yield name, os.stat(name, dir_fd=fd, follow_symlinks=False)
        except OSError:
            continue
