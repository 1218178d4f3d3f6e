"""Training-step benchmark: CE vs HAMR (exact, cheaper modes, the authors' step) on the same batches.

    python scripts/bench_step.py                       # MiniLM, SST-5 + MIT-Restaurant, CPU or GPU
    python scripts/bench_step.py --model tiny_random --reps 2 --out /tmp/bench   # seconds, for tests

For each dataset, fixed real training batches (and meta batches from the balanced meta set's
source, dev) are run through every variant's *training step* (the loop's `train_step`: the
method's loss, backward, clipping, optimiser step). Variants are interleaved, their order rotated
every repetition, so that drifts in the machine's speed hit them alike; each repetition yields a
ratio to CE measured seconds apart, and the median ratio over repetitions is reported. Peak memory
is measured per variant in a fresh subprocess on CPU (max RSS), or with
`torch.cuda.max_memory_allocated` on GPU. Writes `<out>/step_<device>.json` and `.md`.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

VARIANTS = [
    "ce",
    "hamr_exact",
    "hamr_trainer",
    "hamr_every4",
    "hamr_scope2",
    "hamr_scope0",
    "authors",
    "hamr_exact_fused",
    "ce_graphed",
    "hamr_exact_graphed",
]
# the last three are for GPUs (scripts/gpu_check.sh): on a CPU in train mode SDPA runs the math kernel either
# way, and CUDA graphs need CUDA
DEFAULT_VARIANTS = VARIANTS[:-3]
GRAPHED = {"ce_graphed", "hamr_exact_graphed"}
DESCRIPTIONS = {
    "ce": "cross-entropy step (the baselines' loop)",
    "hamr_exact": "HAMR, exact meta step every step (hamr.meta.every=1, scope=null)",
    "hamr_trainer": "HAMR exact inside transformers.Trainer (hamr.hf.HamrTrainer): the Trainer's training_step, "
    "clipping, optimiser and scheduler steps",
    "hamr_every4": "HAMR, meta step every 4th step (hamr.meta.every=4)",
    "hamr_scope2": "HAMR, virtual step over head + top 2 layers (hamr.meta.scope=2)",
    "hamr_scope0": "HAMR, virtual step over the classifier head only (hamr.meta.scope=0)",
    "authors": "the authors' NER step: meta loss also back-propagated into the model, second forward",
    "hamr_exact_fused": "HAMR exact, the meta forward at φ' on the fused attention kernels "
    "(meta_step's fused_meta_forward)",
    "ce_graphed": "the CE step captured once as a CUDA graph and replayed (hamr.cuda_graphs; no non-finite check)",
    "hamr_exact_graphed": "the exact HAMR step captured once as a CUDA graph and replayed (hamr.cuda_graphs; no "
    "non-finite check, no host-side hardness records)",
}
TARGETS = {  # the step's speed targets (the accuracy target needs training runs, see results/bench/README.md)
    "hamr_exact_over_ce": 2.5,  # CPU
    "hamr_exact_over_ce_cuda": 3.0,
    "ops_exact_over_ce": 3.0,  # aten operator calls (CPU) or kernel launches (CUDA) per step, from --profile
    "authors_over_hamr_exact": 5.0,
    "cheapest_over_ce": 1.3,
    "memory_exact_over_ce": 2.0,
    "trainer_over_hamr_exact": 1.05,  # the HamrTrainer wrapper adds no real cost to the loop's step
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["sst5", "mit_restaurant"])
    parser.add_argument("--model", default="minilm", help="a conf/model option")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--batches", type=int, default=4, help="fixed batches per variant and repetition")
    parser.add_argument("--reps", type=int, default=5, help="interleaved repetitions")
    parser.add_argument("--warmup", type=int, default=1, help="untimed repetitions first")
    parser.add_argument("--variants", nargs="+", default=DEFAULT_VARIANTS, choices=VARIANTS)
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--precision", default="fp32", choices=["fp32", "bf16"], help="as trainer.precision (bf16: CUDA autocast)"
    )
    parser.add_argument(
        "--override", nargs="*", default=[], help="more config overrides, e.g. model.name_or_path=/models/x"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--no-memory", action="store_true", help="skip the per-variant memory probes")
    parser.add_argument("--memory-variants", nargs="+", choices=VARIANTS, help="probe only these (default: all)")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also profile one pass per variant: host reads and syncs per step, top operators",
    )
    parser.add_argument("--out", type=Path, default=Path("results/bench"))
    parser.add_argument("--memory-probe", help=argparse.SUPPRESS)  # internal: one variant, print peak RSS
    parser.add_argument("--dataset", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def subset(split, indices):
    """The examples ``indices`` of a split (hamr.data.records.Split), in that order."""
    return dataclasses.replace(
        split, inputs=[split.inputs[int(i)] for i in indices], targets=[split.targets[int(i)] for i in indices]
    )


class Bench:
    """Model, fixed batches and one training method + optimiser per variant, for one dataset."""

    def __init__(self, args: argparse.Namespace, dataset: str, device: torch.device, variants: list[str]):
        from hamr.algorithm.meta_step import meta_step, scope_parameter_names
        from hamr.benchmark.authors_step import meta_step_authors
        from hamr.config import compose_train, validate
        from hamr.cuda_graphs import GraphedStep, pad_batch
        from hamr.data.encode import collator_for, encode_split
        from hamr.data.prepare import load_dataset_splits
        from hamr.loop import BaselineMethod
        from hamr.losses import CrossEntropyLoss
        from hamr.models import build_model, load_tokenizer

        cfg = compose_train(
            [
                f"dataset={dataset}",
                f"model={args.model}",
                "method=hamr",
                "logger=none",
                f"trainer.max_length={args.max_length}",
                f"trainer.batch_size={args.batch_size}",
                f"trainer.precision={args.precision}",
                *args.override,
            ]
        )
        settings = validate(cfg)
        data = load_dataset_splits(settings.dataset, seed=0)
        tokenizer = load_tokenizer(settings.model)
        collate = collator_for(data.task, tokenizer)
        rng = np.random.default_rng(0)
        n = args.batch_size * args.batches
        train = encode_split(
            subset(data.train, rng.choice(len(data.train), n, replace=False)),
            data.task,
            data.label2id,
            tokenizer,
            args.max_length,
        )
        dev = encode_split(
            subset(data.dev, rng.choice(len(data.dev), n, replace=len(data.dev) < n)),
            data.task,
            data.label2id,
            tokenizer,
            args.max_length,
        )
        self.batches = [collate(train.features[j : j + args.batch_size]) for j in range(0, n, args.batch_size)]
        meta_batches = [collate(dev.features[j : j + args.batch_size]) for j in range(0, n, args.batch_size)]
        self.pad_length = None
        if GRAPHED & set(variants):  # a graph replays one shape: every variant gets batches of the longest length
            self.pad_length = max(b["input_ids"].shape[1] for b in self.batches + meta_batches)
            self.batches = [pad_batch(b, self.pad_length, tokenizer.pad_token_id) for b in self.batches]
            meta_batches = [pad_batch(b, self.pad_length, tokenizer.pad_token_id) for b in meta_batches]
        self.meta_batches = meta_batches
        self.examples_per_rep = n
        self.task, self.device = data.task, device
        torch.manual_seed(0)
        self.model = build_model(settings.model, data.task, data.label_names).to(device).train()
        self.model_name = settings.model.name
        loss = CrossEntropyLoss().to(device)
        self.methods, self.optimizers, to_capture = {}, {}, {}
        for variant in variants:
            if variant in GRAPHED:
                to_capture[variant] = self._graphed_step(variant, loss, settings, data.task, len(train))
                continue
            if variant == "hamr_trainer":
                self.trainer = self._hamr_trainer(settings, train, dev, collate)
                continue
            if variant == "ce":
                method = BaselineMethod(loss, "ce", device, settings.trainer.precision)
            else:
                every = 4 if variant == "hamr_every4" else 1
                top = {"hamr_scope2": 2, "hamr_scope0": 0}.get(variant)
                hp = dataclasses.replace(
                    settings.hamr, meta=dataclasses.replace(settings.hamr.meta, every=every, scope=top)
                )
                scope = None if top is None else scope_parameter_names(self.model, top)
                meta_step_fn = {
                    "authors": meta_step_authors,
                    "hamr_exact_fused": functools.partial(meta_step, fused_meta_forward=True),
                }.get(variant, meta_step)
                method = self._hamr_method(variant, hp, loss, settings, data.task, len(train), scope, meta_step_fn)
            self.methods[variant] = method
            self.optimizers[variant] = torch.optim.AdamW(self.model.parameters(), lr=1e-5)
        # captured only once every variant is built: HamrMethod seeds torch, and a seed set after a capture
        # breaks the captured graph's dropout RNG (an illegal memory access at its next replay)
        self.graphed = {
            variant: GraphedStep(step, *examples, warmup=2) for variant, (step, examples) in to_capture.items()
        }

    def _hamr_method(self, variant: str, hp, loss, settings, task: str, n_train: int, scope=None, meta_step_fn=None):
        """A HamrMethod over the fixed batches (every training example in the pool, the meta batches
        cycled, no neighbours), with the rates of a one-epoch run of them; seed 0 for every variant."""
        from hamr.algorithm.method import HamrMethod, endless
        from hamr.algorithm.rates import step_rates

        rates = step_rates(hp, trainer_lr=settings.trainer.lr, steps_per_epoch=len(self.batches), epochs=1)
        return HamrMethod(
            name=variant,
            loss=loss,
            hp=hp,
            rates=rates,
            ablation=settings.ablation,
            task=task,
            device=self.device,
            pool=np.arange(n_train),
            n_train=n_train,
            meta_batches=endless(self.meta_batches),
            neighbours=None,
            pool_classes=["all"] * n_train,
            precision=settings.trainer.precision,
            seed=0,
            scope=scope,
            **({"meta_step_fn": meta_step_fn} if meta_step_fn is not None else {}),
        )

    def _hamr_trainer(self, settings, train, dev, collate):
        """A HamrTrainer over the same model, the fixed training examples and meta batches (no
        neighbours, as the loop's variants), its method, optimiser and scheduler built as
        ``Trainer.train`` builds them."""
        import tempfile

        from transformers import TrainingArguments

        from hamr.algorithm.method import endless
        from hamr.hf import HamrTrainer

        args = TrainingArguments(
            output_dir=tempfile.mkdtemp(prefix="bench_trainer_"),
            per_device_train_batch_size=len(self.batches[0]["labels"]),
            learning_rate=1e-5,
            weight_decay=0.0,
            max_grad_norm=1.0,
            optim="adamw_torch",
            report_to=[],
            use_cpu=self.device.type == "cpu",
            bf16=settings.trainer.precision == "bf16",
            disable_tqdm=True,
        )
        trainer = HamrTrainer(
            model=self.model,
            args=args,
            train_dataset=train,
            meta_dataset=dev,
            data_collator=collate,
            hamr=settings.hamr,
            ablation="no_neighbor_boost",
            task=self.task,
        )
        trainer.hamr_method = trainer._build_method()
        trainer.hamr_method.meta_batches = endless(self.meta_batches)  # the loop variants' meta batches
        trainer.create_optimizer_and_scheduler(num_training_steps=10**6)
        trainer.current_gradient_accumulation_steps = 1  # set by the Trainer per update
        return trainer

    def _run_trainer(self) -> float:
        """One pass over the fixed batches as Trainer's inner loop takes a step (callbacks aside)."""
        from hamr.hf import INDEX_COLUMN

        trainer, model = self.trainer, self.trainer.model
        start_pass(trainer.hamr_method)
        self._sync()
        start = time.perf_counter()
        for batch in self.batches:
            inputs = {**{k: v for k, v in batch.items() if k != "index"}, INDEX_COLUMN: batch["index"]}
            trainer.training_step(model, inputs)
            trainer._clip_grad_norm(model)
            trainer.optimizer.step()
            trainer.lr_scheduler.step()
            model.zero_grad()
        self._sync()
        return time.perf_counter() - start

    def _graphed_step(self, variant: str, loss, settings, task: str, n_train: int):
        """``variant``'s step function (hamr.cuda_graphs) with its own capturable optimisers, and the
        example batches (on the device) to capture it on."""
        from hamr.steps import ce_step, graph_ready_optimizer, hamr_step

        # fused, skipping a non-finite step on the device: the optimisers trainer.cuda_graphs uses
        optimizer = graph_ready_optimizer(torch.optim.AdamW, self.model.parameters(), lr=1e-5, device=self.device)
        first = {k: v.to(self.device) for k, v in self.batches[0].items() if k != "index"}
        if variant == "ce_graphed":
            return ce_step(self.model, loss, optimizer, grad_clip=1.0, precision=settings.trainer.precision), (first,)
        hp = settings.hamr
        # a HamrMethod only for its f_θ (same seed as the eager variants'), rates and example loss
        method = self._hamr_method(variant, hp, loss, settings, task, n_train)
        net_optimizer = graph_ready_optimizer(
            torch.optim.Adam,
            method.weight_net.parameters(),
            lr=method.rates.weight_net_lr,
            device=self.device,
            weight_decay=hp.weight_net_weight_decay,
        )
        step = hamr_step(
            self.model,
            method.weight_net,
            net_optimizer,
            optimizer,
            example_loss=method.example_loss,
            meta_loss=method.meta_loss,
            inner_lr=method.rates.inner_lr,
            clip=(hp.weight_clip_low, hp.weight_clip_high),
            grad_clip=1.0,
            precision=settings.trainer.precision,
        )
        meta = {k: v.to(self.device) for k, v in self.meta_batches[0].items()}
        return step, (first, meta)

    def run(self, variant: str) -> float:
        """Seconds for one pass over the fixed batches with ``variant``'s training step."""
        from hamr.algorithm.method import HamrMethod
        from hamr.loop import train_step

        if variant in self.graphed:
            return self._run_graphed(variant)
        if variant == "hamr_trainer":
            return self._run_trainer()
        method, optimizer = self.methods[variant], self.optimizers[variant]
        if isinstance(method, HamrMethod):
            start_pass(method)  # every pass starts with a meta step (hamr.meta.every)
        self._sync()
        start = time.perf_counter()
        for batch in self.batches:
            train_step(self.model, method, batch, optimizer, None, grad_clip=1.0)
        self._sync()
        seconds = time.perf_counter() - start
        return seconds

    def _run_graphed(self, variant: str) -> float:
        step = self.graphed[variant]
        self._sync()
        start = time.perf_counter()
        for batch, meta_batch in zip(self.batches, self.meta_batches):
            outputs = step(batch) if variant == "ce_graphed" else step(batch, meta_batch)
        self._sync()
        seconds = time.perf_counter() - start
        if not torch.isfinite(outputs[0]):  # a graph has no non-finite check of its own: a NaN run is no timing
            raise RuntimeError(f"bench_step: {variant} gave a non-finite loss; its timings are not valid")
        return seconds

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def start_pass(method) -> None:
    """Forget a HamrMethod's records of the pass just timed (pending h updates, weights, meta losses)
    without applying them, and start its meta-step cadence again: every timed pass is alike."""
    method._pending_hardness, method._epoch_weights, method._epoch_meta_losses = [], [], []
    method.steps = 0


def peak_rss_mb() -> float:
    """This process's peak resident memory (MB): VmHWM on Linux (ru_maxrss would include the
    parent's memory at fork time, it survives exec), ru_maxrss elsewhere."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / (1024 if sys.platform == "darwin" else 1)


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def memory_probe(args: argparse.Namespace) -> None:
    """Child process: build one variant, run two passes, print peak RSS (MB) as JSON: over the
    whole process, and during the training steps alone (model, data and setup excluded)."""
    bench = Bench(args, args.dataset, torch.device("cpu"), [args.memory_probe])
    before = peak_rss_mb()
    reset = reset_peak_rss()
    for _ in range(2):
        bench.run(args.memory_probe)
    peak = peak_rss_mb()
    print(
        json.dumps(
            {
                "peak_rss_mb": max(peak, before),
                "setup_peak_rss_mb": before,
                "steps_peak_rss_mb": peak if reset else None,
            }
        )
    )


def measure_memory(args: argparse.Namespace, dataset: str, variant: str, bench: Bench) -> dict:
    if bench.device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(bench.device)
        bench.run(variant)
        return {"peak_cuda_mb": torch.cuda.max_memory_allocated(bench.device) / 2**20}
    command = [
        sys.executable,
        "-m",
        "hamr.benchmark.step",
        "--memory-probe",
        variant,
        "--dataset",
        dataset,
        "--model",
        args.model,
        "--batch-size",
        str(args.batch_size),
        "--max-length",
        str(args.max_length),
        "--batches",
        str(args.batches),
        "--precision",
        args.precision,
        "--override",
        *args.override,
    ] + (["--threads", str(args.threads)] if args.threads else [])
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


SCALAR_READS = {"aten::_local_scalar_dense"}  # .item(), float(t), bool(t) of a tensor on any device
SYNC_CALLS = {"cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize"}
# runtime and driver entry points that start a kernel (cuBLAS and Triton use the driver's, CUDA 12+ the Ex forms),
# or a whole captured graph
KERNEL_LAUNCHES = {"cudaLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernel", "cuLaunchKernelEx", "cudaGraphLaunch"}


def profile_variant(bench: Bench, variant: str) -> dict:
    """torch.profiler over one pass of ``variant`` (after one unprofiled pass), per training step:
    CUDA synchronisations (the host waiting for the device: ``.item()`` of a device tensor,
    boolean-mask indexing, ...; the pass's own two around the timer excluded), kernel launches,
    ``.item()`` calls of any tensor (CPU ones too, e.g. AdamW's step counters), and the operators
    with the most self time."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if bench.device.type == "cuda" else [])
    bench.run(variant)
    with profile(activities=activities) as prof:
        bench.run(variant)
    events = prof.key_averages()
    steps = len(bench.batches)
    cuda = bench.device.type == "cuda"

    def self_us(e) -> float:
        return float(getattr(e, "self_device_time_total", 0.0) if cuda else e.self_cpu_time_total)

    top = sorted(events, key=self_us, reverse=True)[:8]
    # the most frequent operators: where the calls (and on a GPU the launches) come from
    frequent = sorted((e for e in events if e.key.startswith("aten::")), key=lambda e: e.count, reverse=True)[:12]
    syncs = sum(e.count for e in events if e.key in SYNC_CALLS) - (2 if cuda else 0)
    return {
        "aten_ops_per_step": sum(e.count for e in events if e.key.startswith("aten::")) / steps,
        "top_calls_per_step": {e.key: e.count / steps for e in frequent},
        "item_calls_per_step": sum(e.count for e in events if e.key in SCALAR_READS) / steps,
        "syncs_per_step": max(syncs, 0) / steps if cuda else None,
        "kernel_launches_per_step": (
            sum(e.count for e in events if e.key in KERNEL_LAUNCHES) / steps if cuda else None
        ),
        "top_self_ms_per_step": {e.key: self_us(e) / 1000 / steps for e in top},
    }


def bench_dataset(args: argparse.Namespace, dataset: str, device: torch.device) -> dict:
    bench = Bench(args, dataset, device, args.variants)
    times: dict[str, list[float]] = {v: [] for v in args.variants}
    for rep in range(args.warmup + args.reps):
        order = args.variants[rep % len(args.variants) :] + args.variants[: rep % len(args.variants)]
        for variant in order:
            seconds = bench.run(variant)
            if rep >= args.warmup:
                times[variant].append(seconds)
        print(
            f"{dataset}: repetition {rep + 1}/{args.warmup + args.reps}{' (warm-up)' if rep < args.warmup else ''}",
            file=sys.stderr,
            flush=True,
        )
    rows = {}
    for variant in args.variants:
        ratios = [t / c for t, c in zip(times[variant], times["ce"])] if "ce" in times else []
        rows[variant] = {
            "description": DESCRIPTIONS[variant],
            "seconds_per_step_median": statistics.median(times[variant]) / len(bench.batches),
            "examples_per_second": bench.examples_per_rep / statistics.median(times[variant]),
            "ratio_to_ce_median": statistics.median(ratios) if ratios else None,
            "ratio_to_ce_min": min(ratios) if ratios else None,
            "ratio_to_ce_max": max(ratios) if ratios else None,
            "seconds_per_pass": times[variant],
        }
    if not args.no_memory:  # a captured graph keeps its memory pool: its peak is not comparable
        for variant in [v for v in args.memory_variants or args.variants if v not in GRAPHED]:
            rows[variant].update(measure_memory(args, dataset, variant, bench))
    if args.profile:
        for variant in args.variants:
            rows[variant]["profile"] = profile_variant(bench, variant)
    # pad_length: the one length every batch was padded to for the graphed variants (None: each batch its own)
    return {"task": bench.task, "model": bench.model_name, "pad_length": bench.pad_length, "variants": rows}


def memory_metric(device: str) -> str:
    """The row key of the memory number comparable across variants on this device (MiB)."""
    return "peak_cuda_mb" if device.startswith("cuda") else "steps_peak_rss_mb"


def target_lines(results: dict) -> list[str]:
    """Issues 4 and 15's step targets, each with the measured number and whether it is met."""
    lines = []
    memory_key = memory_metric(results["device"])
    on_cuda = results["device"].startswith("cuda")
    time_target = TARGETS["hamr_exact_over_ce_cuda" if on_cuda else "hamr_exact_over_ce"]
    for dataset, result in results["datasets"].items():
        rows = result["variants"]
        ratio = {v: r["ratio_to_ce_median"] for v, r in rows.items()}
        if "hamr_exact" in ratio and ratio["hamr_exact"] is not None:
            value = ratio["hamr_exact"]
            lines.append(
                f"| {dataset} | HAMR exact step / CE step | <= {time_target} | "
                f"{value:.2f} | {'met' if value <= time_target else 'not met'} |"
            )
        profiles = {v: r.get("profile", {}) for v, r in rows.items()}
        ops_key, ops_name = (
            ("kernel_launches_per_step", "kernel launches") if on_cuda else ("aten_ops_per_step", "aten operator calls")
        )
        if profiles.get("ce", {}).get(ops_key) and profiles.get("hamr_exact", {}).get(ops_key):
            value = profiles["hamr_exact"][ops_key] / profiles["ce"][ops_key]
            lines.append(
                f"| {dataset} | {ops_name} per step, HAMR exact / CE | <= {TARGETS['ops_exact_over_ce']} | "
                f"{value:.2f} | {'met' if value <= TARGETS['ops_exact_over_ce'] else 'not met'} |"
            )
        if ratio.get("hamr_trainer") is not None and ratio.get("hamr_exact"):
            value = ratio["hamr_trainer"] / ratio["hamr_exact"]
            target = TARGETS["trainer_over_hamr_exact"]
            lines.append(
                f"| {dataset} | HamrTrainer step / loop's HAMR exact step | <= {target} | {value:.2f} | "
                f"{'met' if value <= target else 'not met'} |"
            )
        if "authors" in ratio and "hamr_exact" in ratio and ratio["hamr_exact"]:
            value = ratio["authors"] / ratio["hamr_exact"]
            lines.append(
                f"| {dataset} | authors' step / HAMR exact step | >= {TARGETS['authors_over_hamr_exact']} | "
                f"{value:.2f} | {'met' if value >= TARGETS['authors_over_hamr_exact'] else 'not met'} |"
            )
        if ratio.get("hamr_exact_graphed") is not None:
            value = ratio["hamr_exact_graphed"]
            graphed_ce = rows.get("ce_graphed", {}).get("seconds_per_step_median")
            versus = (
                f"; / CE graphed {rows['hamr_exact_graphed']['seconds_per_step_median'] / graphed_ce:.2f}"
                if graphed_ce
                else ""
            )
            lines.append(
                f"| {dataset} | HAMR exact step as a CUDA graph / CE step | <= {time_target} | {value:.2f}{versus} | "
                f"{'met' if value <= time_target else 'not met'} (prototype: not in the training loop) |"
            )
        cheap = {
            v: r
            for v, r in ratio.items()
            if v not in ("ce", "hamr_exact", "hamr_trainer", "authors", *GRAPHED) and r is not None
        }
        if cheap:
            best = min(cheap, key=cheap.get)
            lines.append(
                f"| {dataset} | cheapest mode ({best}) / CE step | <= {TARGETS['cheapest_over_ce']} | "
                f"{cheap[best]:.2f} | {'met' if cheap[best] <= TARGETS['cheapest_over_ce'] else 'not met'} "
                "(speed only; dev Macro-F1 within a seed-std: see README) |"
            )
        if rows.get("ce", {}).get(memory_key) and rows.get("hamr_exact", {}).get(memory_key):
            value = rows["hamr_exact"][memory_key] / rows["ce"][memory_key]
            lines.append(
                f"| {dataset} | peak memory HAMR exact / CE ({memory_key}) | <= "
                f"{TARGETS['memory_exact_over_ce']} | {value:.2f} | "
                f"{'met' if value <= TARGETS['memory_exact_over_ce'] else 'not met'} |"
            )
    return lines


def markdown(results: dict) -> str:
    memory_key = memory_metric(results["device"])
    lines = [
        f"# Training-step benchmark ({results['device']})",
        "",
        f"Command: `{results['command']}`  ",
        f"Date: {results['date']}; machine: {results['machine']}; "
        f"torch {results['torch']}; {results.get('precision', 'fp32')}; batch {results['batch_size']}, "
        f"max length {results['max_length']}, "
        f"{results['batches']} fixed batches x {results['reps']} interleaved repetitions "
        f"(+{results['warmup']} warm-up).",
        "",
        "Ratios are medians over repetitions of (variant time / CE time in the same repetition); "
        "min-max in brackets. Absolute times drift with the machine, the ratios much less. Memory: on CPU, "
        "the peak resident memory of a fresh process during two passes of the variant's steps (VmHWM reset "
        "after model and data are loaded; the whole process's peak is in the JSON); on GPU, "
        "torch.cuda.max_memory_allocated.",
        "",
    ]
    for dataset, result in results["datasets"].items():
        lines += [
            f"## {dataset} ({result['task']}, {result['model']})",
            "",
            f"| variant | s/step | examples/s | / CE step | {memory_key} |",
            "|---|---|---|---|---|",
        ]
        for variant, row in result["variants"].items():
            ratio = row["ratio_to_ce_median"]
            spread = f"{ratio:.2f} [{row['ratio_to_ce_min']:.2f}-{row['ratio_to_ce_max']:.2f}]" if ratio else "-"
            memory = f"{row[memory_key]:.0f}" if row.get(memory_key) is not None else "-"
            lines.append(
                f"| {variant} | {row['seconds_per_step_median']:.3f} | {row['examples_per_second']:.1f} | "
                f"{spread} | {memory} |"
            )
        lines += [""] + [f"- `{v}`: {DESCRIPTIONS[v]}" for v in result["variants"]] + [""]
        profiled = {v: r["profile"] for v, r in result["variants"].items() if "profile" in r}
        if profiled:
            lines += [
                "Profiler (one pass, per training step): aten operator calls (nested calls counted; on any "
                "device) and their ratio to CE's, CUDA synchronisations (the host waiting for the device), "
                "kernel launches, and the three operators with the most self time (ms).",
                "",
                "| variant | aten ops | / CE | syncs | launches | top operators |",
                "|---|---|---|---|---|---|",
            ]
            ce_ops = profiled.get("ce", {}).get("aten_ops_per_step")
            for v, prof in profiled.items():
                top = ", ".join(f"{k} {ms:.1f}" for k, ms in list(prof["top_self_ms_per_step"].items())[:3])
                fmt = lambda x: "-" if x is None else f"{x:.1f}"  # noqa: E731
                ops = prof.get("aten_ops_per_step")
                ratio = f"{ops / ce_ops:.2f}" if ops and ce_ops else "-"
                lines.append(
                    f"| {v} | {fmt(ops)} | {ratio} | {fmt(prof['syncs_per_step'])} | "
                    f"{fmt(prof['kernel_launches_per_step'])} | {top} |"
                )
            lines += ["", "Most frequent operators, calls per step:", ""]
            lines += [
                f"- `{v}`: "
                + ", ".join(
                    f"{k.removeprefix('aten::')} {n:.0f}" for k, n in prof.get("top_calls_per_step", {}).items()
                )
                for v, prof in profiled.items()
            ]
            lines.append("")
    lines += [
        "## Targets",
        "",
        "| dataset | quantity | target | measured | |",
        "|---|---|---|---|---|",
        *target_lines(results),
        "",
    ]
    return "\n".join(lines)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_probe:
        memory_probe(args)
        return
    from hamr.components import pick_device
    from hamr.results import atomic_write_bytes

    device = pick_device(args.device)
    if GRAPHED & set(args.variants) and device.type != "cuda":
        raise SystemExit(
            f"bench_step: {', '.join(sorted(GRAPHED & set(args.variants)))} capture CUDA graphs: "
            "they need --device cuda"
        )
    started = time.time()
    results = {
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *(argv if argv is not None else sys.argv[1:])]),
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "device": str(device),
        "machine": (
            torch.cuda.get_device_name(device)
            if device.type == "cuda"
            else f"{platform.machine()} CPU, {torch.get_num_threads()} torch threads"
        ),
        "torch": torch.__version__,
        "precision": args.precision,
        "batch_size": args.batch_size,
        "max_length": args.max_length,
        "batches": args.batches,
        "reps": args.reps,
        "warmup": args.warmup,
        "datasets": {dataset: bench_dataset(args, dataset, device) for dataset in args.datasets},
    }
    results["seconds"] = time.time() - started
    suffix = ("" if args.precision == "fp32" else f"_{args.precision}") + (
        "" if args.model == "minilm" else f"_{args.model}"
    )
    stem = args.out / f"step_{device.type}{suffix}"
    atomic_write_bytes(stem.with_suffix(".json"), json.dumps(results, indent=2).encode())
    text = markdown(results)
    atomic_write_bytes(stem.with_suffix(".md"), text.encode())
    print(text)


if __name__ == "__main__":  # the memory probe runs each variant in a fresh process: python -m hamr.benchmark.step
    main()
