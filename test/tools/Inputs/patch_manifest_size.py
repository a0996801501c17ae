#!/usr/bin/env python3
"""patch_manifest_size.py IN.so OUT.so SIZE: rewrites the value of the
module's hasten_manifest_size symbol, as a damaged or hostile module would
carry it. SIZE +N adds N to the current value."""
import struct
import sys

from module_elf import rehash, symbol_range

data = bytearray(open(sys.argv[1], "rb").read())
at, _ = symbol_range(data, "hasten_manifest_size")
new = sys.argv[3]
if new.startswith("+"):
    new = struct.unpack_from("<Q", data, at)[0] + int(new[1:])
struct.pack_into("<Q", data, at, int(new))
rehash(data)  # consistent, so that the check under test is what refuses it
open(sys.argv[2], "wb").write(data)
