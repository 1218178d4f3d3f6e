"""One graphed-bench configuration in its own process: prints OK or the error, never raises."""
import sys, time, traceback
import torch
config = sys.argv[1]
import hamr.cuda_graphs as cg
if "mask4d" in config:
    def _inputs(batch):
        inputs = {k: v for k, v in batch.items() if k not in ("labels", "index")}
        inputs["attention_mask"] = inputs["attention_mask"][:, None, None, :].bool()
        return inputs
    cg._inputs = _inputs
import scripts.bench_step as bs
argv = sys.argv[2:]
args = bs.parse_args(argv)
t = time.time()
try:
    r = bs.bench_dataset(args, args.datasets[0], torch.device("cuda"))
    torch.cuda.synchronize()
    print(f"DIAG {config}: OK", {v: round(x["seconds_per_step_median"], 4) for v, x in r["variants"].items()}, f"{time.time()-t:.0f}s")
except Exception as e:
    print(f"DIAG {config}: FAILED {type(e).__name__}: {str(e).splitlines()[0]}", f"{time.time()-t:.0f}s")
    traceback.print_exc(limit=4)
