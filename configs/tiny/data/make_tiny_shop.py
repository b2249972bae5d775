"""Regenerate the synthetic 'tiny-shop' dataset (deterministic): python configs/tiny/data/make_tiny_shop.py

120 items in 6 categories (20 per category); a title is "<brand> <category word> <colour> <size>".
200 users with 6-14 interactions each: a user has a favourite category; the next item is the successor
(within the category) of the previous one with probability 0.6, another item of the favourite category
with probability 0.3, and any item otherwise. Text and order both carry signal, so a model that reads the
titles and the sequence can beat popularity. Small enough for CI (seconds).
"""

import csv
import random
from pathlib import Path

CATS = ["lipstick", "shampoo", "mascara", "perfume", "nail polish", "face cream"]
BRANDS = ["Aurora", "Belle", "Cosmo", "Dune", "Elara", "Fiora", "Gala", "Halo", "Iris", "Juno"]
COLOURS = ["red", "pink", "nude", "black", "blue", "gold", "rose", "coral", "plum", "ivory"]
SIZES = ["mini", "travel size", "0.5 oz", "1 oz", "2 oz", "family size"]


def main(out: Path = Path(__file__).parent) -> None:
    rng = random.Random(7)
    items = []
    for c, cat in enumerate(CATS):
        for j in range(20):
            title = f"{BRANDS[(j + c) % len(BRANDS)]} {cat} {COLOURS[(3 * j + c) % len(COLOURS)]} {SIZES[(j + 2 * c) % len(SIZES)]}"
            items.append((c * 20 + j, title))
    rows = []
    for u in range(200):
        fav = rng.randrange(len(CATS))
        cur = fav * 20 + rng.randrange(20)
        n = rng.randint(6, 14)
        t = 1_600_000_000 + u * 1000
        seq = [cur]
        while len(seq) < n:
            r = rng.random()
            if r < 0.6:
                cur = (cur // 20) * 20 + (cur % 20 + 1) % 20
            elif r < 0.9:
                cur = fav * 20 + rng.randrange(20)
            else:
                cur = rng.randrange(len(items))
            if cur not in seq:
                seq.append(cur)
        for k, it in enumerate(seq):
            rows.append((f"u{u}", f"i{it}", t + k * 60))
    with open(out / "interactions.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["user", "item", "timestamp"])
        w.writerows(rows)
    with open(out / "items.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["item", "title"])
        w.writerows([(f"i{i}", t) for i, t in items])


if __name__ == "__main__":
    main()
