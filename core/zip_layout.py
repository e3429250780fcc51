"""A torch.save archive read the same by the checker and by torch: its layout, exactly.

core.torch_files checks an archive through Python's ``zipfile`` and then lets torch load it
through miniz. Two readers of one file see the same members only where the zip format
leaves neither a choice: ``zipfile`` honours data prepended to an archive (the "concat"
offset: it takes the central directory to end just before the end record, wherever the
record says it starts), miniz takes the recorded offset; an archive whose end record
points at directory A with directory B just before it is checked as B and loaded as A.
So the layout torch writes is required, byte for byte where it matters:

- the end record at exactly the file's last 22 bytes (no comment), preceded by the zip64
  end record and its locator torch writes (or neither), on one disk;
- the central directory ending exactly where those end records start (``zipfile``'s
  concat 0), holding exactly the entries they count;
- every entry's name as it is stored (no NUL, where ``zipfile`` cuts a name; ASCII unless
  flagged UTF-8, so both readers decode it alike), its local header naming it likewise,
  its data inside the archive before the directory and overlapping no other's;
- and torch's own reader, opened on the file, listing the same records at the same local
  headers with the same sizes.
"""
from __future__ import annotations

import struct
import zipfile
from pathlib import Path
from typing import BinaryIO

import torch

from gansweep.core.pickle_parts import Malformed, Refused, first_line, quote

EOCD, ZIP64_EOCD, ZIP64_LOCATOR, LOCAL = b"PK\x05\x06", b"PK\x06\x06", b"PK\x06\x07", \
    b"PK\x03\x04"
EOCD_SIZE, LOCATOR_SIZE, ZIP64_SIZE, LOCAL_SIZE = 22, 20, 56, 30
UTF8_FLAG = 0x800


def end_records(f: BinaryIO, size: int) -> tuple[int, int]:
    """(entries, where the central directory starts) from the end records torch writes."""
    f.seek(max(0, size - EOCD_SIZE - LOCATOR_SIZE - ZIP64_SIZE))
    tail = f.read()
    if len(tail) < EOCD_SIZE:
        raise Malformed("too short for a zip archive")
    sig, disk, cd_disk, n_disk, n, cd_size, cd_at, comment = struct.unpack(
        "<4sHHHHIIH", tail[-EOCD_SIZE:])
    if sig != EOCD or disk or cd_disk or n_disk != n or comment:
        raise Refused("an archive whose end record is not its last 22 bytes on one disk "
                      "(torch.save writes no comment and one disk)")
    ends_at = size - EOCD_SIZE
    locator = tail[-EOCD_SIZE - LOCATOR_SIZE:-EOCD_SIZE]
    if len(tail) >= EOCD_SIZE + LOCATOR_SIZE and locator[:4] == ZIP64_LOCATOR:
        _, z_disk, z_at, disks = struct.unpack("<4sIQI", locator)
        ends_at = size - EOCD_SIZE - LOCATOR_SIZE - ZIP64_SIZE
        record = tail[:-EOCD_SIZE - LOCATOR_SIZE][-ZIP64_SIZE:]
        if z_disk or disks != 1 or z_at != ends_at or len(record) != ZIP64_SIZE:
            raise Refused("an archive whose zip64 end record is not just before its locator")
        zsig, length, _, _, zdisk, zcd_disk, zn_disk, zn, zcd_size, zcd_at = struct.unpack(
            "<4sQHHIIQQQQ", record)
        if zsig != ZIP64_EOCD or length != ZIP64_SIZE - 12 or zdisk or zcd_disk or \
                zn_disk != zn or n not in (zn, 0xFFFF) or cd_size not in (zcd_size, 2 ** 32 - 1) \
                or cd_at not in (zcd_at, 2 ** 32 - 1):
            raise Refused("an archive whose zip64 end record disagrees with its end record")
        n, cd_size, cd_at = zn, zcd_size, zcd_at
    if cd_at + cd_size != ends_at:
        raise Refused(f"an archive whose central directory ({cd_size:,} bytes at {cd_at:,}) "
                      f"does not end where its end records start ({ends_at:,}): data before "
                      f"the archive, or a second directory")
    return n, cd_at


def _stored_name(info: zipfile.ZipInfo) -> bytes:
    return info.orig_filename.encode("utf-8" if info.flag_bits & UTF8_FLAG else "cp437")


def check_members(f: BinaryIO, infos: list[zipfile.ZipInfo], entries: int, cd_at: int
                  ) -> None:
    """Every entry named as stored, by its local header too, its data in place and alone."""
    if len(infos) != entries:
        raise Refused(f"an archive whose directory holds {len(infos):,} entries; its end "
                      f"record counts {entries:,}")
    end = 0
    for info in sorted(infos, key=lambda i: i.header_offset):
        name = _stored_name(info)
        if info.orig_filename != info.filename or \
                not (info.flag_bits & UTF8_FLAG or name.isascii()):
            raise Refused(f"an entry named {quote(info.orig_filename)}: a NUL (zipfile cuts "
                          f"the name there, torch does not), or not ASCII and not UTF-8")
        f.seek(info.header_offset)
        head = f.read(LOCAL_SIZE)
        if len(head) < LOCAL_SIZE or head[:4] != LOCAL:
            raise Refused(f"entry {quote(info.filename)}: no local header where the "
                          f"directory says")
        name_len, extra_len = struct.unpack("<HH", head[26:30])
        start = info.header_offset + LOCAL_SIZE + name_len + extra_len
        if f.read(name_len) != name or info.header_offset < end or \
                start + info.compress_size > cd_at:
            raise Refused(f"entry {quote(info.filename)}: its local header names another "
                          f"entry, or its data overlaps another's or the directory")
        end = start + info.compress_size


def check_torch_view(path: Path, prefix: str, infos: list[zipfile.ZipInfo]) -> None:
    """torch's reader (miniz) lists the records checked, at the same places and sizes."""
    ours = {i.filename[len(prefix):]: i for i in infos}
    try:
        reader = torch._C.PyTorchFileReader(str(path))
        theirs = {r: (reader.get_record_header_offset(r), reader.get_record_size(r))
                  for r in reader.get_all_records()}
    except (RuntimeError, ValueError) as e:
        raise Malformed(f"a damaged archive (torch: {first_line(e, 80)})") from None
    if theirs != {r: (i.header_offset, i.file_size) for r, i in ours.items()}:
        raise Refused("torch's reader sees other records in the archive than the check read")


def check_archive(path: Path, z: zipfile.ZipFile, prefix: str) -> None:
    """The layout above, before any member of ``z`` (opened on ``path``) is trusted."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        entries, cd_at = end_records(f, size)
        check_members(f, z.infolist(), entries, cd_at)
    check_torch_view(path, prefix, z.infolist())
