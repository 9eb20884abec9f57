"""Session 37: where a ragged row's parts end. Reads flash-mla-phases' FLASH_MLA_PHASES_DUMP files (one line per
CTA: its part's pieces and blocks, then its trace stamps in microseconds) and prints a least-squares fit of each
CTA's exit = a + b * blocks + c * (pieces - 1), then per piece count the parts' blocks and exits. Needs numpy.

    python3 docs/experiments/s37_dump_fit.py DUMP.tsv...
"""
import sys

import numpy as np


def main():
    for path in sys.argv[1:]:
        rows = [line.rstrip("\n").split("\t") for line in open(path)][1:]
        d = np.array([[float(x) for x in r] for r in rows])
        pieces, blocks, exits = d[:, 1], d[:, 2], d[:, 7]
        live = blocks > 0
        a = np.c_[np.ones(live.sum()), blocks[live], pieces[live] - 1]
        coef = np.linalg.lstsq(a, exits[live], rcond=None)[0]
        resid = exits[live] - a @ coef
        print(f"{path}: {live.sum()} CTAs with blocks")
        print(f"  exit = {coef[0]:.2f} + {coef[1]:.3f} * blocks + {coef[2]:.2f} * (pieces - 1) us;"
              f" residual sd {np.std(resid):.2f}")
        for k in sorted(set(pieces[live])):
            m = live & (pieces == k)
            print(f"  {int(k)} pieces: {m.sum():3d} parts, blocks mean {blocks[m].mean():.1f}"
                  f" max {blocks[m].max():.0f}, exit mean {exits[m].mean():.1f} max {exits[m].max():.1f}")


if __name__ == "__main__":
    main()
