"""Session 37: the card's state per phase of s37-run.sh call2. Reads nvidia-smi's CSV (timestamp, SM clock, memory
clock, power, temperature, limit reasons; sampled every 100 ms) and the phase marks ("YYYY/MM/DD HH:MM:SS.ns NAME"
per line, each phase running until the next mark) and prints each phase's median SM clock, memory clock, power and
temperature over all its samples; then, over its busy samples (above BUSY_W watts: the GPU working, not the host
making inputs or checking rows), their count, median SM clock, memory clock and power, and their most frequent
limit-reason mask. Used by s37-run.sh call2 and next."""
import statistics
import sys
from collections import Counter
from datetime import datetime

BUSY_W = 300.0


def stamp(text):
    day, clock = text.strip().split(" ")
    whole, _, frac = clock.partition(".")
    return datetime.strptime(f"{day} {whole}", "%Y/%m/%d %H:%M:%S").timestamp() + float("0." + (frac or "0"))


def median(values):
    return statistics.median(values) if values else float("nan")


def main():
    samples = []
    for line in open(sys.argv[1]):
        parts = [x.strip() for x in line.split(",")]
        if len(parts) < 5:
            continue
        try:
            samples.append((stamp(parts[0]), float(parts[1]), float(parts[2]), float(parts[3]), float(parts[4]),
                            parts[5] if len(parts) > 5 else ""))
        except ValueError:
            continue
    marks = []
    for line in open(sys.argv[2]):
        if len(line.split(" ", 2)) < 3:
            continue
        day, clock, name = line.split(" ", 2)
        marks.append((stamp(f"{day} {clock[:15]}"), name.strip()))
    print(f"{'phase':<10} {'samples':>7} {'SM MHz':>7} {'mem MHz':>8} {'W':>6} {'C':>4}  {'busy':>5} {'busy SM':>7}"
          f" {'busy mem':>8} {'busy W':>6}  reasons (busy)")
    for (begin, name), (end, _) in zip(marks, marks[1:]):
        rows = [s for s in samples if begin <= s[0] < end]
        busy = [s for s in rows if s[3] > BUSY_W]
        reasons = Counter(s[5] for s in busy).most_common(1)
        print(f"{name:<10} {len(rows):>7} {median([s[1] for s in rows]):>7.0f} {median([s[2] for s in rows]):>8.0f} "
              f"{median([s[3] for s in rows]):>6.0f} {median([s[4] for s in rows]):>4.0f}  {len(busy):>5} "
              f"{median([s[1] for s in busy]):>7.0f} {median([s[2] for s in busy]):>8.0f} "
              f"{median([s[3] for s in busy]):>6.0f}  {reasons[0][0] if reasons else ''}")


if __name__ == "__main__":
    main()
