#!/usr/bin/env python3
"""top_stalls.py CSV REASON N: the N SASS lines with the most warp-stall samples for REASON (a substring of a
column name, e.g. no_instruction) in an `ncu --page source --print-source sass --csv` export, with each
line's address, instruction and share of the kernel's samples of that reason."""
import csv
import sys


def main() -> int:
    path, reason, count = sys.argv[1], sys.argv[2].lower(), int(sys.argv[3])
    with open(path, newline="") as f:
        rows = [r for r in csv.reader(f) if r]
    header_at = next((i for i, r in enumerate(rows) if any("Address" in c for c in r)), None)
    if header_at is None:
        print("top_stalls: no header with an Address column;", len(rows), "rows")
        return 1
    header = rows[header_at]
    cols = [i for i, c in enumerate(header) if reason in c.lower().replace(" ", "_")]
    if not cols:
        print("top_stalls: no column matches", reason, "- columns:", "; ".join(header))
        return 1
    col = cols[0]
    addr = next(i for i, c in enumerate(header) if "Address" in c)
    src = next((i for i, c in enumerate(header) if c.strip() == "Source"), addr + 1)

    def value(r: list) -> float:
        try:
            return float(r[col].replace(",", ""))
        except (ValueError, IndexError):
            return 0.0

    body = [r for r in rows[header_at + 1:] if len(r) == len(header)]
    total = sum(value(r) for r in body) or 1.0
    print(f"{header[col]}: {total:.0f} samples over {len(body)} lines")
    for r in sorted(body, key=value, reverse=True)[:count]:
        print(f"  {r[addr]:>8} {value(r) / total:6.1%}  {r[src].strip()[:70]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
