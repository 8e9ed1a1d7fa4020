#!/usr/bin/python3
"""compare_table.py: the README's QAT-versus-PTQ grid from qat compare's compare.json.

Rows: weight-only schemes (bits x group, on the even grid, normal-float
levels (the +nf rows), each layer's k-means table (+kmeans) or the even
grid's full range (+full), k-means tables per channel or group
(+kmeans+tables-channel, +kmeans+tables-group)), then mixed
precision at each budget;
columns: RTN, GPTQ, AWQ and QAT (the best QAT row of that scheme, plain or
distilled, each named), every loss with its change against float+ft (QAT) or
float (PTQ) in parentheses. Also prints the float and float+ft rows and the
W8A8 rows.

Run: bench/compare_table.py [runs/compare-tiny-shakespeare/compare.json]
"""

import json
import sys


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "runs/compare-tiny-shakespeare/compare.json"
    rows = json.load(open(path))
    flt = next(r for r in rows if r["method"] == "float")
    fts = [r for r in rows if r["method"] == "float+ft"]
    print("float %.4f; float+ft %s" % (flt["val_loss"], ", ".join("%.4f" % r["val_loss"] for r in fts)))
    ft = fts[0]["val_loss"] if fts else None

    def cell(r, base):
        return "%.4f (%+.4f)" % (r["val_loss"], r["val_loss"] - base)

    def levels(r):
        return next((cb for cb in ("nf", "kmeans+tables-channel", "kmeans+tables-group", "kmeans", "full")
                     if r["method"].endswith("+" + cb)), "")

    schemes = []
    for r in rows:
        if r["a_bits"] == 32 and 0 < r["w_bits"] < 32 and (r["w_bits"], r["group"], levels(r)) not in schemes:
            schemes.append((r["w_bits"], r["group"], levels(r)))
    print("| W bits, group | bits/weight | RTN | GPTQ | AWQ | QAT |")
    print("|---|---|---|---|---|---|")
    for b, g, cb in schemes:
        pick = [r for r in rows if r["w_bits"] == b and r["group"] == g and r["a_bits"] == 32 and levels(r) == cb]
        get = lambda m: next((r for r in pick if r["method"] == m), None)
        qat = sorted([r for r in pick if r["method"].startswith("qat")], key=lambda r: r["val_loss"])
        cells = []
        for m in ("rtn", "gptq", "awq"):
            r = get(m + ("+" + cb if cb else ""))
            cells.append(cell(r, flt["val_loss"]) if r else "-")
        qcell = "; ".join("%s %s" % (cell(r, ft if ft is not None else flt["val_loss"]), r["method"]) for r in qat)
        gname = "g%d" % g if g > 0 else "channel" if g < 0 else "tensor"
        bpw = pick[0]["bits_per_weight"]
        name = ("int%d full range" % b if cb == "full" else "kmeans%d, a table per %s" % (b, cb.split("-")[-1])
                if "+tables-" in cb else "%s%d" % (cb or "int", b))
        print("| %s %s | %.2f | %s | %s |" % (name, gname, bpw, " | ".join(cells), qcell or "-"))
    # qat+mixed rows may carry suffixes of their own (qat+mixed+kd when the budget config distils)
    mixed = [r for r in rows if "+mixed" in r["method"]]
    budgets = sorted({round(r["bits_per_weight"] + 0.049, 1) for r in mixed}, reverse=True)
    for bud in budgets:
        pick = [r for r in mixed if round(r["bits_per_weight"] + 0.049, 1) == bud]
        get = lambda m: next((r for r in pick if r["method"] == m), None)
        cells = []
        for m in ("rtn+mixed", "gptq+mixed", "awq+mixed"):
            r = get(m)
            cells.append("%s at %.3f" % (cell(r, flt["val_loss"]), r["bits_per_weight"]) if r else "-")
        q = next((r for r in pick if r["method"].startswith("qat+mixed")), None)
        qc = ("%s at %.3f %s" % (cell(q, ft if ft is not None else flt["val_loss"]), q["bits_per_weight"], q["method"])
              if q else "-")
        print("| mixed, budget %.1f | - | %s | %s |" % (bud, " | ".join(cells), qc))
    print()
    print("| W8A8 row | val loss |")
    print("|---|---|")
    for r in rows:
        if r["a_bits"] < 32:
            print("| %s | %.4f (%+.4f) |" % (r["method"], r["val_loss"], r["val_loss"] - (
                ft if r["method"].startswith("qat") and ft is not None else flt["val_loss"])))


if __name__ == "__main__":
    main()
