"""BERT-base encoder timing on the GPU machine: a plain-PyTorch fp16 encoder (F.linear,
F.scaled_dot_product_attention with the key-padding mask, F.layer_norm, exact GELU; random
weights; no embeddings) in eager mode, eager + one CUDA graph, and torch.compile + CUDA graphs
(Inductor, compiled once with dynamic shapes, each case captured into one CUDA graph like the
eager one: mode="reduce-overhead" recompiled per shape and its per-call host work, which the
timing counts, made it slower than the plain eager graph), at batch 1/8/32 x seq 128/384, beside `tessera bench --json` on a plan
of a seeded random BERT-base (Tessera's plan also runs the embedding, so the comparison is
slightly in PyTorch's favour). Same method both sides: warm-up, events, median (PyTorch: L2
flushed, benches/timing.py; Tessera: graph replay median). summary[case]["vs_<baseline>"] is
baseline time / Tessera time (> 1: Tessera is faster).
With --packed-json: ragged batches (BERT-base, batch 32 and 8 at max seq 384; lengths uniform in
1..384, about half padding; short-heavy, 85 % in 1..64; and no padding at all) on a second plan
compiled with packed buckets (`--batch 8,32 --seq 384 --packed-buckets 8 --packed-granule 128`: 8 tuned
token-count buckets under each padded one and fill buckets every 128 tokens between them, which take
the tuned ones' configs; same tuning cache):
`tessera bench --lens ... --padding packed|padded|auto` beside PyTorch eager, eager graph and
torch.compile + graph on the padded batch with the key-padding mask; summary ratios
`vs_padded_plan`, `vs_eager`, `vs_eager_graph`, `vs_compile_graph` per case and padding mode;
for auto also `vs_padded_same_process` and `packed_vs_padded_same_process` from `--candidates`
(the padded and the packed bucket timed in one process in interleaved rounds, so the ratio does
not carry the device state each separate process meets) and whether auto chose the faster.
Usage: python3 bert_bench.py --tessera PATH --work DIR --json OUT.json [--commit C] [--tune]
       [--packed-json PACKED.json]"""
import argparse, datetime, json, os, subprocess, sys, time
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import timed

ap = argparse.ArgumentParser()
ap.add_argument("--tessera", required=True)
ap.add_argument("--work", required=True)
ap.add_argument("--json", required=True)
ap.add_argument("--commit", default="")
ap.add_argument("--gpu", default="h200")
ap.add_argument("--tune", action="store_true", help="tune cache misses while compiling (default: --no-tune)")
ap.add_argument("--batches", default="1,8,32")
ap.add_argument("--seqs", default="128,384")
ap.add_argument("--packed-json", help="also run the ragged-batch (packed execution) benchmark into this file")
a = ap.parse_args()
os.makedirs(a.work, exist_ok=True)
L, H, NH, I = 12, 768, 12, 3072
BATCHES, SEQS = [int(x) for x in a.batches.split(",")], [int(x) for x in a.seqs.split(",")]
torch.manual_seed(0)
dev, dt = "cuda", torch.float16
W = [{k: (torch.randn(*s, device=dev, dtype=dt) * 0.02) for k, s in
      dict(wqkv=(3 * H, H), bqkv=(3 * H,), wo=(H, H), bo=(H,), w1=(I, H), b1=(I,), w2=(H, I), b2=(H,),
           g1=(H,), be1=(H,), g2=(H,), be2=(H,)).items()} for _ in range(L)]


def encoder(x, mask):
    b, s, _ = x.shape
    for w in W:
        q, k, v = F.linear(x, w["wqkv"], w["bqkv"]).view(b, s, 3, NH, H // NH).permute(2, 0, 3, 1, 4)
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask).transpose(1, 2).reshape(b, s, H)
        x = F.layer_norm(F.linear(o, w["wo"], w["bo"]) + x, (H,), w["g1"], w["be1"], 1e-12)
        x = F.layer_norm(F.linear(F.gelu(F.linear(x, w["w1"], w["b1"])), w["w2"], w["b2"]) + x, (H,), w["g2"], w["be2"], 1e-12)
    return x


def graphed(fn, *args):
    s = torch.cuda.Stream(); s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3): fn(*args)
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g): fn(*args)
    return g.replay


# the Tessera plan: a seeded random BERT-base checkpoint, every bucket
from transformers import BertConfig, BertModel
mdir, plan = os.path.join(a.work, "bench-bert-base"), os.path.join(a.work, "bench-bert-base.tsr")
BertModel(BertConfig(num_hidden_layers=L, hidden_size=H, num_attention_heads=NH, intermediate_size=I)).save_pretrained(mdir)


def compile_cmd(out, batches, seqs, packed_steps, packed_granule=0):
    return [a.tessera, "compile", mdir, "--gpu", a.gpu, "--batch", ",".join(map(str, batches)), "--seq",
            ",".join(map(str, seqs)), "--packed-buckets", str(packed_steps), "--packed-granule", str(packed_granule),
            "--quiet", "--out", out] + ([] if a.tune else ["--no-tune"])


def timed_compile(cmd):
    """Run one `tessera compile`: (wall seconds, None) or (wall seconds, its output on failure)."""
    started = time.time()
    c = subprocess.run(cmd, capture_output=True, text=True)
    return time.time() - started, None if c.returncode == 0 else (c.stdout + c.stderr).strip()


cmd = compile_cmd(plan, BATCHES, SEQS, 0)
print("$", " ".join(cmd), flush=True)
compile_s, compile_error = timed_compile(cmd)
print(f"tessera compile: {compile_s:.1f} s", flush=True)
if compile_error: print("tessera compile failed:", compile_error, flush=True)
# the same compile again: tuning cache and module cache warm
compile_warm_s = None
if not compile_error:
    warm_s, warm_error = timed_compile(cmd)
    compile_warm_s = None if warm_error else warm_s
    print(f"tessera compile, warm caches: {compile_warm_s and round(compile_warm_s, 2)} s", flush=True)

compiled = torch.compile(encoder, dynamic=True)
rows, summary = [], {}
with torch.no_grad():
    for b in BATCHES:
        for s in SEQS:
            case = f"B{b} S{s}"
            x = torch.randn(b, s, H, device=dev, dtype=dt)
            mask = torch.ones(b, 1, 1, s, device=dev, dtype=torch.bool)
            base = {"eager": timed(lambda: encoder(x, mask))}
            base["eager_graph"] = timed(graphed(encoder, x, mask))
            base["compile_graph"] = timed(graphed(compiled, x, mask))
            row = {"case": case, "batch": b, "seq": s, **{f"{k}_ms": v for k, v in base.items()}}
            if compile_error:
                row["tessera_error"] = compile_error
            else:
                r = subprocess.run([a.tessera, "bench", plan, "--batch", str(b), "--seq", str(s), "--json", "--iters", "50"],
                                   capture_output=True, text=True)
                if r.returncode == 0:
                    t = json.loads(r.stdout)
                    row["tessera"] = t
                    summary[case] = {f"vs_{k}": v / t["median_ms"] for k, v in base.items()}
                else:
                    row["tessera_error"] = (r.stdout + r.stderr).strip()
            print(case, {k: round(v, 4) for k, v in base.items()},
                  row.get("tessera", {}).get("median_ms", row.get("tessera_error", "")), flush=True)
            rows.append(row)

def tessera_bench(plan, args):
    started = time.time()
    r = subprocess.run([a.tessera, "bench", plan, "--json", "--iters", "30"] + args, capture_output=True, text=True)
    if r.returncode != 0:
        return {"error": (r.stdout + r.stderr).strip()}
    # the whole process: plan load (kernels from the module cache, every bucket warmed up and
    # captured, and with auto every bucket timed) plus the timing itself
    return {**json.loads(r.stdout), "process_wall_s": time.time() - started}


packed_ok = True
if a.packed_json:
    pplan = os.path.join(a.work, "bench-bert-base-packed.tsr")
    cmd = compile_cmd(pplan, [8, 32], [384], 8, 128)
    print("$", " ".join(cmd), flush=True)
    pcompile_s, perr = timed_compile(cmd)
    print(f"tessera compile (packed buckets): {pcompile_s:.1f} s", flush=True)
    g = torch.Generator().manual_seed(11)
    dists = {
        "uniform": lambda b: torch.randint(1, 385, (b,), generator=g),
        "short_heavy": lambda b: torch.where(torch.rand(b, generator=g) < 0.85, torch.randint(1, 65, (b,), generator=g),
                                             torch.randint(65, 385, (b,), generator=g)),
        "no_padding": lambda b: torch.full((b,), 384),
    }
    prows, psummary = [], {}
    with torch.no_grad():
        for b in [32, 8]:
            for dist, draw in dists.items():
                lens = [int(v) for v in draw(b)]
                case = f"B{b} S384 {dist}"
                x = torch.randn(b, 384, H, device=dev, dtype=dt)
                mask = (torch.arange(384, device=dev)[None, :] < torch.tensor(lens, device=dev)[:, None])[:, None, None, :]
                base = {"eager": timed(lambda: encoder(x, mask))}
                base["eager_graph"] = timed(graphed(encoder, x, mask))
                base["compile_graph"] = timed(graphed(compiled, x, mask))
                row = {"case": case, "batch": b, "seq": 384, "lens": lens, "tokens": sum(lens),
                       "padding_fraction": 1 - sum(lens) / (b * 384), **{f"{k}_ms": v for k, v in base.items()}}
                if perr:
                    row["tessera_error"] = perr; packed_ok = False
                else:
                    for mode in ["packed", "padded", "auto"]:
                        # auto also times both buckets it weighs in its own process, interleaved
                        extra = ["--candidates"] if mode == "auto" else []
                        row[mode] = tessera_bench(pplan, ["--seq", "384", "--lens", ",".join(map(str, lens)), "--padding", mode] + extra)
                        packed_ok &= "median_ms" in row[mode]
                    if all("median_ms" in row[m] for m in ["packed", "padded", "auto"]):
                        for mode in ["packed", "auto"]:
                            t = row[mode]["median_ms"]
                            psummary[f"{case} {mode}"] = {"vs_padded_plan": row["padded"]["median_ms"] / t,
                                                          **{f"vs_{k}": v / t for k, v in base.items()}}
                        psummary[f"{case} padded"] = {f"vs_{k}": v / row["padded"]["median_ms"] for k, v in base.items()}
                        # one process, interleaved rounds: what auto chose against the padded
                        # bucket, free of the state each separate process meets
                        cand = {("packed" if c["packed"] else "padded"): c["median_ms"] for c in row["auto"].get("candidates", [])}
                        if "padded" in cand and "packed" in cand:
                            chosen = "packed" if row["auto"]["bucket"].startswith("packed") else "padded"
                            psummary[f"{case} auto"].update({
                                "vs_padded_same_process": cand["padded"] / cand[chosen],
                                "packed_vs_padded_same_process": cand["padded"] / cand["packed"],
                                "chose": chosen,
                                "chose_the_faster": cand[chosen] <= min(cand.values())})
                print(case, f"{row['padding_fraction']:.2f} padding", {k: round(v, 3) for k, v in base.items()},
                      {m: row.get(m, {}).get("median_ms") for m in ["packed", "padded", "auto"]},
                      {m: row.get(m, {}).get("bucket") for m in ["packed", "auto"]}, flush=True)
                prows.append(row)
    json.dump({"benchmark": "bert_packed", "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               "commit": a.commit, "torch": torch.__version__, "device": torch.cuda.get_device_name(),
               "tessera_compile": "tuned" if a.tune else "--no-tune", "tessera_compile_s": pcompile_s,
               "command": "python3 " + " ".join(sys.argv), "summary": psummary, "results": prows}, open(a.packed_json, "w"), indent=1)

json.dump({"benchmark": "bert", "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "commit": a.commit, "torch": torch.__version__, "device": torch.cuda.get_device_name(),
           "tessera_compile": "tuned" if a.tune else "--no-tune", "tessera_compile_s": compile_s,
           "tessera_compile_warm_s": compile_warm_s, "command": "python3 " + " ".join(sys.argv), "summary": summary, "results": rows}, open(a.json, "w"), indent=1)
sys.exit(0 if len(summary) == len(rows) and packed_ok else 1)
