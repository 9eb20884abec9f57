"""Session 37: where a ragged row's parts end. Reads flash-mla-phases' FLASH_MLA_PHASES_DUMP files (a header line,
then one line per CTA: its part's pieces and blocks and its trace stamps in microseconds; columns found by name, so
both the session's files and the later ones with a part column read) and prints a least-squares fit of each CTA's
exit = a + b * blocks + c * (pieces - 1), then per piece count the parts' blocks and exits. Needs numpy.

    python3 docs/experiments/s37_dump_fit.py DUMP.tsv...
"""
import sys

import numpy as np


def main():
    for path in sys.argv[1:]:
        lines = [line.rstrip("\n").split("\t") for line in open(path) if line.strip()]
        if len(lines) < 2:
            print(f"{path}: no CTAs")
            continue
        col = {name: i for i, name in enumerate(lines[0])}
        d = np.array([[float(x) for x in r] for r in lines[1:]])
        pieces, blocks, exits = d[:, col["pieces"]], d[:, col["blocks"]], d[:, col["exit"]]
        live = (blocks > 0) & (exits >= 0)
        print(f"{path}: {live.sum()} CTAs with blocks")
        if live.sum() < 3:
            continue
        a = np.c_[np.ones(live.sum()), blocks[live], pieces[live] - 1]
        coef = np.linalg.lstsq(a, exits[live], rcond=None)[0]
        resid = exits[live] - a @ coef
        print(f"  exit = {coef[0]:.2f} + {coef[1]:.3f} * blocks + {coef[2]:.2f} * (pieces - 1) us;"
              f" residual sd {np.std(resid):.2f}")
        for k in sorted(set(pieces[live])):
            m = live & (pieces == k)
            print(f"  {int(k)} pieces: {m.sum():3d} CTAs, blocks mean {blocks[m].mean():.1f}"
                  f" max {blocks[m].max():.0f}, exit mean {exits[m].mean():.1f} max {exits[m].max():.1f}")


if __name__ == "__main__":
    main()
