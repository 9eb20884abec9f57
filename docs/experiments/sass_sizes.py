#!/usr/bin/env python3
"""sass_sizes.py BINARY [CUOBJDUMP]: each kernel's SASS size and the instructions a kernel change is checked for.

Session 23-24 found the dense kernel's speed tied to its code size (instruction fetch; docs/DESIGN.md, "The
code layout is a lever and a hazard"): check a change's size here before spending device time. The CUDA
toolkit on the CPU machine has no cuobjdump; `pip download nvidia-cuda-cuobjdump==13.*` and unpack the wheel
(its nvidia/cu13/bin/cuobjdump), or pass another path. Prints per kernel: KiB of SASS, HGMMA, UTMALDG,
MUFU.EX2 and LDL/STL (local memory) counts, and the name shortened."""
import re
import subprocess
import sys


def main() -> int:
    binary = sys.argv[1]
    tool = sys.argv[2] if len(sys.argv) > 2 else "/tmp/cuobj/nvidia/cu13/bin/cuobjdump"
    text = subprocess.run([tool, "-sass", binary], capture_output=True, text=True, check=True).stdout
    kernels = []
    for line in text.splitlines():
        if "Function :" in line:
            kernels.append({"name": line.split()[-1], "last": 0, "HGMMA": 0, "UTMALDG": 0, "MUFU.EX2": 0, "local": 0})
            continue
        m = re.search(r"/\*([0-9a-f]{4,6})\*/\s+(\S.*?);", line)
        if not m or not kernels:
            continue
        k, instr = kernels[-1], m.group(2)
        k["last"] = int(m.group(1), 16)
        for key in ("HGMMA", "UTMALDG", "MUFU.EX2"):
            k[key] += key in instr
        k["local"] += bool(re.search(r"\b(LDL|STL)\b", instr))
    for k in kernels:
        name = re.sub(r"^_ZN9flash_mla", "", k["name"])[:90]
        print(f"{(k['last'] + 16) / 1024:7.1f} KiB  HGMMA {k['HGMMA']:3}  UTMALDG {k['UTMALDG']:3}  "
              f"MUFU.EX2 {k['MUFU.EX2']:3}  LDL/STL {k['local']:2}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
