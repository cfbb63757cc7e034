"""Summarise Nsight Compute reports of single kernels into one JSON: per kernel the duration,
clock, cycles, warp instructions, tensor-pipe and issue-slot use and the warp-stall samples
(from `ncu -i REP --page raw --csv`), and, where a SASS page is given (`ncu -i REP --page source
--csv --print-source sass`), where the stall samples fall: the hottest instructions and a
histogram over windows of 64 instructions (mainloop, epilogue and copy-out show as separate
windows). The summary gives each kernel `vs_<first label>`: the first kernel's SM cycles over
its own. What `scripts/gpu-run.sh profile` runs on the GPU machine.
Usage: python3 ncu_summary.py OUT.json COMMIT COMMAND LABEL=RAW.csv[,SASS.csv] ..."""
import csv, datetime, json, sys

METRICS = {
    "duration_us": "gpu__time_duration.sum",
    "sm_clock_ghz": "sm__cycles_elapsed.avg.per_second",
    "sm_cycles": "sm__cycles_elapsed.avg",
    "warp_instructions": "smsp__inst_executed.sum",
    "tensor_pipe_active_pct": "sm__pipe_tensor_cycles_active.avg.pct_of_peak_sustained_active",
    "issue_slots_busy_pct": "sm__inst_executed.sum.pct_of_peak_sustained_elapsed",
    "xu_pipe_pct": "sm__inst_executed_pipe_xu.avg.pct_of_peak_sustained_active",
    "registers": "launch__registers_per_thread",
    "grid": "launch__grid_size",
}
STALLS = "smsp__pcsamp_warps_issue_stalled_"


def number(text):
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return None


def raw_page(path):
    """The first kernel row of a raw CSV page: {metric: value}."""
    rows = list(csv.reader(open(path)))
    head = next(i for i, r in enumerate(rows) if "Kernel Name" in r)
    names, values = rows[head], rows[head + 2]  # the row after the names holds the units
    return dict(zip(names, values))


def kernel(raw):
    out = {"kernel": raw.get("Kernel Name")}
    for key, metric in METRICS.items():
        if metric in raw:
            out[key] = number(raw[metric])
    stalls = {m[len(STALLS):]: number(v) for m, v in raw.items()
              if m.startswith(STALLS) and not m.endswith("_not_issued") and number(v)}
    out["stall_samples"] = dict(sorted(stalls.items(), key=lambda kv: -kv[1]))
    return out


def sass_page(path, hottest=20, window=64):
    rows = list(csv.reader(open(path)))
    head = next(i for i, r in enumerate(rows) if "Source" in r and "Address" in r)
    names, data = rows[head], rows[head + 1:]
    src = names.index("Source")
    samples = names.index("Warp Stall Sampling (All Samples)")
    executed = names.index("Instructions Executed")
    count = lambda r: int(number(r[samples]) or 0)
    total = sum(count(r) for r in data) or 1
    hot = sorted(range(len(data)), key=lambda i: -count(data[i]))[:hottest]
    windows = []
    for start in range(0, len(data), window):
        part = data[start:start + window]
        ops = {}
        for r in part:
            words = r[src].split()
            op = words[1] if words and words[0].startswith("@") and len(words) > 1 else (words[0] if words else "")
            op = op.split(".")[0]
            ops[op] = ops.get(op, 0) + 1
        windows.append({"first": start, "samples_pct": 100 * sum(count(r) for r in part) / total,
                        "executed": int(number(part[0][executed]) or 0),
                        "ops": dict(sorted(ops.items(), key=lambda kv: -kv[1])[:6])})
    return {"instructions": len(data), "samples": total,
            "hottest": [{"index": i, "samples": count(data[i]), "sass": data[i][src].strip()} for i in sorted(hot)],
            "windows": windows}


def main(argv):
    if len(argv) < 5:
        sys.exit(__doc__)
    out, commit, command = argv[1], argv[2], argv[3]
    results = {}
    for spec in argv[4:]:
        label, _, files = spec.partition("=")
        raw_path, _, sass_path = files.partition(",")
        results[label] = kernel(raw_page(raw_path))
        if sass_path:
            results[label]["sass"] = sass_page(sass_path)
    # the first kernel is the baseline: vs_<it> = its SM cycles / this kernel's (> 1: faster)
    base = next(iter(results))
    cases = {}
    for label, k in results.items():
        cases[label] = {"sm_cycles": k.get("sm_cycles"), "warp_instructions": k.get("warp_instructions"),
                        "tensor_pipe_active_pct": k.get("tensor_pipe_active_pct")}
        if results[base].get("sm_cycles") and k.get("sm_cycles"):
            cases[label][f"vs_{base}"] = results[base]["sm_cycles"] / k["sm_cycles"]
    doc = {"benchmark": "ncu_profile", "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "commit": commit, "command": command, "summary": {"cases": cases}, "results": results}
    json.dump(doc, open(out, "w"), indent=1)
    for label, k in results.items():
        top = ", ".join(f"{s} {int(n)}" for s, n in list(k["stall_samples"].items())[:4])
        print(f"{label:28} {k.get('duration_us', 0):8.2f} us  {k.get('sm_clock_ghz', 0):.2f} GHz  "
              f"{k.get('warp_instructions', 0) / 1e6:6.1f} M warp instr  tensor {k.get('tensor_pipe_active_pct', 0):5.1f} %  stalls: {top}")


if __name__ == "__main__":
    main(sys.argv)
