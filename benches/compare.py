"""Merge a Tessera benchmark JSON with the vendor JSON of the same run: prints a table of
TFLOP/s and ratios, writes the combined JSON with device, commit, command and date.
Usage: python3 compare.py TESSERA.json VENDOR.json OUT.json COMMIT COMMAND"""
import datetime, json, statistics, sys

ours, vendor = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
key = lambda r: (r["dtype"], r["m"], r["n"], r["k"])
vmap = {key(r): r for r in vendor["results"]}
rows = []
print(f"{'dtype':5} {'shape':>18} {'tessera TF/s':>13} {'vendor TF/s':>12} {'ratio':>6}  best kernel")
for r in ours["results"]:
    v = vmap.get(key(r))
    if v is None:
        continue
    ratio = v["median_ms"] / r["median_ms"]
    rows.append({**{k: r[k] for k in ("dtype", "m", "n", "k", "best_kernel", "median_ms", "tflops", "rel_err", "registers")},
                 "vendor_median_ms": v["median_ms"], "vendor_tflops": v["tflops"], "ratio": ratio,
                 "candidates": r.get("candidates", [])})
    shape = f"{r['m']}x{r['n']}x{r['k']}"
    print(f"{r['dtype']:5} {shape:>18} {r['tflops']:13.1f} {v['tflops']:12.1f} {ratio:6.2f}  {r['best_kernel']}")
ratios = [r["ratio"] for r in rows]
summary = {"median_ratio": statistics.median(ratios), "min_ratio": min(ratios), "max_ratio": max(ratios), "shapes": len(rows),
           "median_vs_cublas": statistics.median(ratios),
           "cases": {f"{r['dtype']} {r['m']}x{r['n']}x{r['k']}": {"vs_cublas": r["ratio"]} for r in rows}}
# decode shapes (M <= 128): the weight streamed per Tessera run, against the same run's copy bandwidth
if vendor.get("copy_gbps"):
    summary["copy_gbps"] = vendor["copy_gbps"]
    for r in rows:
        if r["m"] <= 128:
            gbps = r["n"] * r["k"] * 2 / (r["median_ms"] * 1e-3) / 1e9
            summary["cases"][f"{r['dtype']} {r['m']}x{r['n']}x{r['k']}"].update(weights_gbps=gbps, of_copy=gbps / vendor["copy_gbps"])
            print(f"{r['dtype']} {r['m']}x{r['n']}x{r['k']}: weights streamed at {gbps:.0f} GB/s, {gbps / vendor['copy_gbps']:.2f} of the copy")
print(f"median ratio {summary['median_ratio']:.3f} (min {summary['min_ratio']:.3f}, max {summary['max_ratio']:.3f}) over {len(rows)} shapes")
json.dump({"benchmark": ours["benchmark"], "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "commit": sys.argv[4], "command": sys.argv[5], "device": ours["device"], "vendor": {k: vendor[k] for k in vendor if k != "results"},
           "timing": ours.get("timing"), "summary": summary, "results": rows}, open(sys.argv[3], "w"), indent=1)
