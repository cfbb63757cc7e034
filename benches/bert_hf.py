"""BERT correctness on the GPU machine: Hugging Face BertModel (seeded random weights, saved with
save_pretrained) in fp32 (the reference) and fp16, against `tessera compile` + `tessera run`, on
the last hidden state of the non-padded tokens. Gate per geometry and input: Tessera's max and
mean abs error to fp32 at most 2x HF fp16's (plus a 1e-3 floor), and per-token cosine >= 0.9999.
Geometries: BERT-base, and 6 layers x hidden 384 x 12 heads of 32 (skipped with a message if
`tessera compile` refuses it). One plan per geometry with buckets batch 1,4 x seq 64,128; the
inputs reach every bucket: batch 4 x seq 128 without padding and with lengths 128/77/5/100 (right
padding), batch 3 x seq 64 (lengths 64/1/33: bucket 4x64), batch 1 x seq 40 (bucket 1x64) and
batch 1 x seq 100 (bucket 1x128), and ragged batches with random lengths from 1 to the maximum (4 x
128 with lengths 128, 1 and two random ones; 4 x 64 random with one of length 1); every case runs
padded (`--padding padded`: the executor pads each input up to its bucket) and packed (`--padding
packed`: the real tokens only, in a packed bucket, attention over cu_seqlens). The plans have two
tuned packed buckets under each padded one and fill buckets every 128 tokens between them
(`--packed-buckets 2 --packed-granule 128`), so packed inputs land in both kinds (the 310 tokens
of 128/77/5/100 in the 384-token fill under 4x128). Each row records the bucket `tessera run`
reports.
Usage: python3 bert_hf.py --tessera PATH --work DIR --json OUT.json [--commit C]"""
import argparse, json, os, subprocess, sys
import torch
from safetensors.torch import save_file, load_file
from transformers import BertConfig, BertModel

ap = argparse.ArgumentParser()
ap.add_argument("--tessera", required=True)
ap.add_argument("--work", required=True)
ap.add_argument("--json", required=True)
ap.add_argument("--gpu", default="h200")
ap.add_argument("--commit", default="")
a = ap.parse_args()
os.makedirs(a.work, exist_ok=True)

GEOMETRIES = {
    "bert-base": dict(num_hidden_layers=12, hidden_size=768, num_attention_heads=12, intermediate_size=3072),
    "l6-h384-hd32": dict(num_hidden_layers=6, hidden_size=384, num_attention_heads=12, intermediate_size=1536),
}
BATCHES, SEQS = [1, 4], [64, 128]
# case: (seq, lengths per sequence); the batch is len(lengths)
_rng = torch.Generator().manual_seed(7)
_r = lambda hi, n: [int(v) for v in torch.randint(1, hi + 1, (n,), generator=_rng)]
CASES = {"no_padding": (128, [128, 128, 128, 128]), "padding": (128, [128, 77, 5, 100]),
         "b3_s64": (64, [64, 1, 33]), "b1_s40": (40, [40]), "b1_s100": (100, [100]),
         "ragged_s128": (128, [128, 1] + _r(128, 2)), "ragged_s64": (64, [1] + _r(64, 3))}
PADDINGS = ["padded", "packed"]


def sh(cmd):
    print("$", " ".join(cmd), flush=True)
    return subprocess.run(cmd, capture_output=True, text=True)


results, ok = [], True
for name, geo in GEOMETRIES.items():
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=30522, max_position_embeddings=512, type_vocab_size=2, hidden_act="gelu", **geo)
    model = BertModel(cfg).eval()
    mdir, plan = os.path.join(a.work, name), os.path.join(a.work, name + ".tsr")
    model.save_pretrained(mdir)  # safetensors (the default)
    r = sh([a.tessera, "compile", mdir, "--gpu", a.gpu, "--batch", ",".join(map(str, BATCHES)), "--seq", ",".join(map(str, SEQS)),
            "--packed-buckets", "2", "--packed-granule", "128", "--no-tune", "--quiet", "--out", plan])
    if r.returncode != 0:
        msg = (r.stdout + r.stderr).strip()
        if name != "bert-base":
            print(f"SKIP {name}: tessera compile refused it: {msg}", flush=True)
            results.append({"geometry": name, "skipped": msg})
            continue
        print(f"FAIL {name}: tessera compile: {msg}", flush=True)
        results.append({"geometry": name, "error": msg}); ok = False
        continue
    ref32 = model.cuda().float()
    ref16 = BertModel(cfg).eval(); ref16.load_state_dict(model.state_dict()); ref16 = ref16.cuda().half()
    for case, (seq, lens) in CASES.items():
        g = torch.Generator().manual_seed(1)
        ids = torch.randint(0, cfg.vocab_size, (len(lens), seq), generator=g)
        types = torch.randint(0, 2, (len(lens), seq), generator=g)
        mask = (torch.arange(seq)[None, :] < torch.tensor(lens)[:, None]).long()
        inp, out = os.path.join(a.work, f"{name}-{case}-in.safetensors"), os.path.join(a.work, f"{name}-{case}-out.safetensors")
        save_file({"input_ids": ids, "attention_mask": mask, "token_type_ids": types}, inp)
        with torch.no_grad():
            kw = dict(input_ids=ids.cuda(), attention_mask=mask.cuda(), token_type_ids=types.cuda())
            h32 = ref32(**kw).last_hidden_state.double().cpu()
            h16 = ref16(**kw).last_hidden_state.double().cpu()
        for padding in PADDINGS:
            row = {"geometry": name, "case": case, "padding": padding, "lens": lens}
            r = sh([a.tessera, "run", plan, "--input", inp, "--out", out, "--padding", padding])
            if r.returncode != 0:
                row["error"] = (r.stdout + r.stderr).strip(); ok = False
                print(f"FAIL {name} {case} {padding}: tessera run: {row['error']}", flush=True)
                results.append(row); continue
            row["run"] = (r.stdout + r.stderr).strip().splitlines()[-1:]
            ht = load_file(out)["last_hidden_state"].double()
            keep = mask.bool()
            t, f16, ref = ht[keep], h16[keep], h32[keep]
            et, e16 = (t - ref).abs(), (f16 - ref).abs()
            cos = torch.nn.functional.cosine_similarity(t, ref, dim=-1)
            row.update(tessera_max=et.max().item(), tessera_mean=et.mean().item(), hf16_max=e16.max().item(),
                       hf16_mean=e16.mean().item(), min_cosine=cos.min().item())
            row["pass"] = (row["tessera_max"] <= 2 * row["hf16_max"] + 1e-3 and row["tessera_mean"] <= 2 * row["hf16_mean"] + 1e-3
                           and row["min_cosine"] >= 0.9999)
            ok &= row["pass"]
            print(f"{'PASS' if row['pass'] else 'FAIL'} {name} {case} {padding}: tessera max {row['tessera_max']:.4g} mean {row['tessera_mean']:.4g} | "
                  f"hf fp16 max {row['hf16_max']:.4g} mean {row['hf16_mean']:.4g} | min cosine {row['min_cosine']:.6f} | {' '.join(row['run'])}", flush=True)
            results.append(row)
# per case: HF fp16's max error over Tessera's (both against HF fp32; > 1: Tessera is closer)
summary = {f"{r['geometry']} {r['case']} {r['padding']}": {"vs_hf_fp16_max_error": r["hf16_max"] / max(r["tessera_max"], 1e-12),
                                           "min_cosine": r["min_cosine"]} for r in results if "tessera_max" in r}
json.dump({"benchmark": "bert_hf", "commit": a.commit, "command": "python3 " + " ".join(sys.argv), "torch": torch.__version__, "device": torch.cuda.get_device_name(), "pass": ok,
           "summary": summary, "results": results}, open(a.json, "w"), indent=1)
sys.exit(0 if ok else 1)
