#!/usr/bin/env python3
"""patch_manifest_size.py IN.so OUT.so SIZE: rewrites the value of the
module's hasten_manifest_size symbol, found through the ELF dynamic symbol
table, as a damaged or hostile module would carry it. SIZE +N adds N to the
current value."""
import struct
import sys

data = bytearray(open(sys.argv[1], "rb").read())
shoff, = struct.unpack_from("<Q", data, 0x28)
shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
phoff, = struct.unpack_from("<Q", data, 0x20)
phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
segments = [struct.unpack_from("<IIQQQQQQ", data, phoff + i * phentsize) for i in range(phnum)]
dynsym = next(s for s in sections if s[1] == 11)  # SHT_DYNSYM
strtab = sections[dynsym[6]]
for at in range(dynsym[4], dynsym[4] + dynsym[5], 24):
    name, _, _, _, value, size = struct.unpack_from("<IBBHQQ", data, at)
    end = data.index(b"\0", strtab[4] + name)
    if bytes(data[strtab[4] + name:end]) == b"hasten_manifest_size":
        for kind, _, offset, vaddr, _, filesz, _, _ in segments:
            if kind == 1 and vaddr <= value < vaddr + filesz:  # PT_LOAD
                at = offset + value - vaddr
                new = sys.argv[3]
                if new.startswith("+"):
                    new = struct.unpack_from("<Q", data, at)[0] + int(new[1:])
                struct.pack_into("<Q", data, at, int(new))
                open(sys.argv[2], "wb").write(data)
                sys.exit(0)
sys.exit("hasten_manifest_size not found")
