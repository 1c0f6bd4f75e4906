"""Simulated review loop: F1 on WildGuardTest prompts vs human labels spent, per ranking strategy.

The reviewer is simulated by the hidden labels of the pool. Setup (prompt task, real data):

* source: the local WildGuardTrain sample (3,393 prompts), rows whose text is also in a test set
  dropped; seed = 200 labels (stratified, ``--seed``); pool = the other ~3,190 prompts.
* round 0: supervised fine-tuning of the packaged MiniLM on the seed (shared by all strategies);
  by default only its top 2 layers train, from cached lower-layer states (``mode: top_layers``,
  ``guardmatch.features``): the cache is built once for the pool and the test suite and reused by
  every round, for training, for scoring the pool (``score_pool(features=...)``) and for the
  run's own evaluation on the prompt suite (``--mode full`` fine-tunes everything, ~3x slower).
* each round r = 1..R, per strategy: ``route`` (score the pool with the round r-1 model, queue N
  items by the strategy), the oracle labels the N queued items in the store (reviewer ``oracle``),
  ``retrain`` (seed + all human labels so far, from the base encoder, same recipe), evaluate.
* everything goes through the real review loop: ``ReviewStore``, ``score_pool``/``route``,
  ``add_review`` and ``retrain`` (which calls ``run_training``).

For two classes least-confidence, margin and entropy are all strictly decreasing functions of
|P(harmful) − 0.5|, so they pick the same queue; the script checks this every round (it compares
the queues each strategy selects from the same model) and trains such a strategy only when its
queue differs from one already trained, otherwise recording it as identical. Resumable: finished
rounds are read back from the results JSON and the stores; run it again to continue.

    nice -n 10 python benchmarks/review_simulation.py --rounds 3 --budget 100 --steps 120
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sqlite3
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="/work/cache/review_sim", help="stores and round runs (outside the repo)")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--seed-labels", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--budget", type=int, default=100)
    ap.add_argument("--strategies", nargs="+", default=["random", "margin", "least_confidence", "entropy"])
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--mode", default="top_layers", choices=["full", "top_layers"],
                    help="top_layers: fine-tune the top N encoder layers from cached lower-layer states")
    ap.add_argument("--top-layers", type=int, default=2)
    ap.add_argument("--features-dir", default=None, help="feature cache (default: WORK/features)")
    ap.add_argument("--keep-models", action="store_true", help="keep every round's weights (~90 MB each)")
    ap.add_argument("--out", default=str(RESULTS / "review_simulation"))
    ap.add_argument("--report-only", action="store_true", help="rewrite the .md/.png from the results JSON")
    return ap.parse_args()


def base_config(args: argparse.Namespace, seed: int):
    from guardmatch.config import TrainConfig

    return TrainConfig.model_validate({
        "output_dir": "unused", "seed": seed, "algorithm": "supervised",
        "data": {"task": "prompt", "train": "wildguardtrain", "labels": "all", "suite": "prompt",
                 "data_dir": args.data_dir, "allow_hub": False},
        "mode": args.mode, "top_layers": args.top_layers,
        "feature_cache_dir": args.features_dir or str(Path(args.work) / "features"),
        "model": {"encoder": "minilm", "max_length": args.max_length},
        "optim": {"lr": args.lr, "layer_decay": 0.8, "batch_size": args.batch_size, "max_steps": args.steps,
                  "warmup_ratio": 0.1, "eval_batch_size": 64},
        "save_every": 10_000, "keep_checkpoints": 1, "log_every": 20, "threads": args.threads,
    })


def load_results(path: Path) -> dict:
    if path.is_file():
        return json.loads(path.read_text())
    return {"rounds": []}


def save_results(path: Path, results: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=2))
    tmp.replace(path)


def find(results: dict, seed: int, strategy: str, rnd: int) -> dict | None:
    for r in results["rounds"]:
        if r["seed"] == seed and r["strategy"] == strategy and r["round"] == rnd:
            return r
    return None


def copy_store(src: Path, dst: Path) -> None:
    """A consistent copy of an SQLite store (the backup API, WAL included)."""
    if dst.exists():
        return
    tmp = dst.with_suffix(".tmp")
    if tmp.exists():
        tmp.unlink()
    with sqlite3.connect(src) as a, sqlite3.connect(tmp) as b:
        a.backup(b)
    os.chmod(tmp, 0o600)
    tmp.replace(dst)


def drop_weights(model_dir: str | None) -> None:
    if model_dir and Path(model_dir, "model.safetensors").is_file():
        Path(model_dir, "model.safetensors").unlink()


def main() -> int:
    args = parse_args()
    if args.report_only:
        write_report(load_results(Path(args.out).with_suffix(".json")), Path(args.out))
        return 0
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    torch.set_num_threads(args.threads)
    from rich.console import Console

    from guardmatch.data.overlap import remove_overlap
    from guardmatch.data.splits import make_split
    from guardmatch.data.suites import load_dataset, load_suite
    from guardmatch.features import FeatureStore
    from guardmatch.model import GuardClassifier
    from guardmatch.review.retrain import retrain
    from guardmatch.review.routing import route, score_pool
    from guardmatch.review.store import ReviewStore

    console = Console(stderr=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    res_path = out.with_suffix(".json")
    results = load_results(res_path)
    results["setup"] = {k: v for k, v in vars(args).items() if k not in ("work", "out")}
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)

    suite = load_suite("prompt", args.data_dir, allow_hub=False)
    test = {"wildguardtest": suite["wildguardtest"]}
    source = load_dataset("wildguardtrain", "prompt", args.data_dir, allow_hub=False).examples
    source, removed = remove_overlap(source, suite, "prompt")
    results["setup"]["source_rows"] = len(source)
    results["setup"]["removed_test_overlap"] = removed
    labeled_test = [e for e in test["wildguardtest"] if e.label is not None]
    results["setup"]["test_set"] = {"name": "wildguardtest", "n": len(labeled_test),
                                    "harmful": sum(e.label == 1 for e in labeled_test)}
    uncertainty = {"margin", "least_confidence", "entropy"}

    for seed in args.seeds:
        cfg = base_config(args, seed)
        split = make_split(source, args.seed_labels, seed=seed, strategy="stratified", source="wildguardtrain")
        oracle = {ex.id: ex.metadata["hidden_label"] for ex in split.unlabeled}
        sdir = work / f"seed{seed}"
        sdir.mkdir(exist_ok=True)
        base_db = sdir / "base.db"
        with ReviewStore.open(base_db, task="prompt") as store:
            store.add_items(split.labeled, seed=True)
            store.add_items(split.unlabeled)
            r0 = find(results, seed, "seed", 0)
            if r0 is None:
                t = time.perf_counter()
                rr = retrain(store, cfg, sdir / "round0", console=console)
                r0 = {"seed": seed, "strategy": "seed", "round": 0, "labels": args.seed_labels, "human_labels": 0,
                      "f1": rr.metrics["wildguardtest"]["f1"], "auprc": rr.metrics["wildguardtest"]["auprc"],
                      "precision": rr.metrics["wildguardtest"]["precision"],
                      "recall": rr.metrics["wildguardtest"]["recall"], "model_dir": str(rr.model_dir),
                      "f1_all_sets": {k: round(v["f1"], 4) for k, v in rr.metrics.items() if k != "_train"},
                      "train_s": round(time.perf_counter() - t, 1)}
                results["rounds"].append(r0)
                save_results(res_path, results)
            console.print(f"[bold]seed {seed} round 0[/]: F1 {r0['f1']:.3f}")

        prev_model = {s: r0["model_dir"] for s in args.strategies}
        score_cache: dict = {}
        for rnd in range(1, args.rounds + 1):
            trained_queues: dict[str, tuple[str, frozenset]] = {}
            for strategy in args.strategies:
                done = find(results, seed, strategy, rnd)
                if done is not None:
                    prev_model[strategy] = done["model_dir"]
                    if done.get("queue_sha"):
                        trained_queues.setdefault(done["queue_sha"], (strategy, frozenset()))
                    continue
                db = sdir / f"{strategy}.db"
                copy_store(base_db, db)
                t = time.perf_counter()
                with ReviewStore.open(db, task="prompt") as store:
                    if len(store.routings()) < rnd:
                        cands = store.routing_candidates()
                        key = (prev_model[strategy], tuple(ex.id for ex in cands))
                        if key not in score_cache:  # strategies sharing a model and pool score it once
                            model = GuardClassifier.from_pretrained(prev_model[strategy])
                            feats = None
                            if args.mode == "top_layers":
                                feats = FeatureStore(model, "top_layers", args.top_layers, root=cfg.feature_cache_dir)
                            score_cache.clear()
                            score_cache[key] = score_pool(model, cands, "prompt", batch_size=64, features=feats,
                                                          model_version=Path(prev_model[strategy]).parent.name)
                            del model
                        scores = score_cache[key]
                        routing = route(scores, pseudo_threshold=1.0, review_budget=args.budget, strategy=strategy,
                                        rng=[seed, rnd])
                        store.add_routing(scores, routing, budget=args.budget, info={"simulation_round": rnd})
                    queue = [i for i in store.queue_ids()]
                    new = queue[(rnd - 1) * args.budget:]
                    for k, item_id in enumerate(new):
                        store.add_review(item_id, oracle[item_id], "oracle", origin="simulation",
                                         created_at=f"2000-01-01T00:{rnd:02d}:{k % 60:02d}.{k:06d}+00:00")
                    route_s = time.perf_counter() - t
                    qsha = hashlib.sha256(json.dumps(sorted(queue)).encode()).hexdigest()[:16]
                    same_as = None
                    if strategy in uncertainty:
                        for other in args.strategies:
                            o = find(results, seed, other, rnd)
                            if other != strategy and other in uncertainty and o and o.get("queue_sha") == qsha \
                                    and o.get("identical_to") is None:
                                same_as = o
                                break
                    if same_as is not None:
                        rec = {**same_as, "strategy": strategy, "identical_to": same_as["strategy"],
                               "route_s": round(route_s, 1), "train_s": 0.0}
                        console.print(f"seed {seed} round {rnd} {strategy}: queue identical to {same_as['strategy']}")
                    else:
                        t = time.perf_counter()
                        rr = retrain(store, cfg, sdir / f"{strategy}-round{rnd}", console=console)
                        m = rr.metrics["wildguardtest"]
                        harm = sum(oracle[i] for i in queue)
                        others = {k: round(v["f1"], 4) for k, v in rr.metrics.items() if k != "_train"}
                        rec = {"seed": seed, "strategy": strategy, "round": rnd,
                               "labels": args.seed_labels + len(queue), "human_labels": len(queue),
                               "queued_harmful": harm, "f1": m["f1"], "auprc": m["auprc"],
                               "precision": m["precision"], "recall": m["recall"], "model_dir": str(rr.model_dir),
                               "queue_sha": qsha, "identical_to": None, "route_s": round(route_s, 1),
                               "train_s": round(time.perf_counter() - t, 1),
                               "labels_used": rr.labels_used, "f1_all_sets": others}
                        console.print(f"[bold]seed {seed} round {rnd} {strategy}[/]: F1 {m['f1']:.3f} "
                                      f"({len(queue)} human labels, {harm} harmful)")
                    results["rounds"].append(rec)
                    save_results(res_path, results)
                    prev_model[strategy] = rec["model_dir"]
            if not args.keep_models:  # round rnd is done for every strategy: round rnd-1 weights are not needed
                for strategy in (["seed"] if rnd == 1 else args.strategies):
                    old = find(results, seed, strategy, rnd - 1)
                    if old and old.get("identical_to") is None:
                        drop_weights(old["model_dir"])
    write_report(results, out)
    return 0


def write_report(results: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    setup = results.get("setup", {})
    all_rows = results["rounds"]
    strategies_run = {r["strategy"] for r in all_rows} - {"seed"}
    # only seeds with every round of every strategy done, so each point averages the same seeds
    complete = sorted(s for s in {r["seed"] for r in all_rows}
                      if all(any(r["seed"] == s and r["strategy"] == st and r["round"] == setup.get("rounds")
                                 for r in all_rows) for st in strategies_run))
    rows = [r for r in all_rows if r["seed"] in complete]
    seeds = complete
    strategies = [s for s in ("random", "least_confidence", "margin", "entropy", "head_disagreement",
                              "apm_instability") if any(r["strategy"] == s for r in rows)]
    base = {r["seed"]: r for r in rows if r["strategy"] == "seed"}
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    styles = {"random": ("k", "o", "--"), "margin": ("tab:blue", "s", "-"), "least_confidence": ("tab:orange", "^", ":"),
              "entropy": ("tab:green", "v", "-."), "head_disagreement": ("tab:purple", "D", "-"),
              "apm_instability": ("tab:red", "P", "-")}
    table = {}
    for s in strategies:
        pts: dict[int, list[float]] = {}
        for seed in seeds:
            if seed in base:
                pts.setdefault(base[seed]["labels"], []).append(base[seed]["f1"])
            for r in rows:
                if r["strategy"] == s and r["seed"] == seed:
                    pts.setdefault(r["labels"], []).append(r["f1"])
        xs = sorted(pts)
        ys = [float(np.mean(pts[x])) for x in xs]
        table[s] = {x: pts[x] for x in xs}
        color, marker, ls = styles.get(s, ("gray", "x", "-"))
        ident = any(r.get("identical_to") for r in rows if r["strategy"] == s)
        label = s + (" (= margin queue)" if ident else "")
        offset = {"least_confidence": 2, "entropy": 4}.get(s, 0)
        ax.plot([x + offset for x in xs], ys, color=color, marker=marker, linestyle=ls, label=label)
    ax.set_xlabel("human labels spent (seed + reviews)")
    ax.set_ylabel("harmful-class F1, WildGuardTest prompts")
    ax.set_title(f"review loop simulation: N={setup.get('budget')} per round, {len(seeds)} seed(s)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=120)
    labels_axis = sorted({x for s in table for x in table[s]})
    lines = ["# Review-loop simulation (hidden pool labels as the reviewer)", "",
             f"Prompt task; seed {setup.get('seed_labels')} WildGuardTrain labels; {setup.get('rounds')} rounds of "
             f"N={setup.get('budget')} reviews; supervised MiniLM fine-tuning from the base encoder each round "
             f"(mode {setup.get('mode')}, top {setup.get('top_layers')} layers; {setup.get('steps')} steps, "
             f"batch {setup.get('batch_size')}, lr {setup.get('lr')}, max_length {setup.get('max_length')}); "
             f"F1 of the harmful class on WildGuardTest prompts (n={setup.get('test_set', {}).get('n')}) at the "
             f"model's threshold. Seeds: {seeds} (mean shown when several).", "",
             "| strategy | " + " | ".join(f"{x} labels" for x in labels_axis) + " |",
             "|---|" + "---:|" * len(labels_axis)]
    for s in strategies:
        cells = []
        for x in labels_axis:
            v = table[s].get(x)
            cells.append("–" if not v else (f"{np.mean(v):.3f}" + (f" ± {np.std(v):.3f}" if len(v) > 1 else "")))
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    lines += ["", "Per round (harmful share of the reviewed items; training and routing seconds on 2 shared CPU cores):",
              "", "| seed | strategy | round | human labels | harmful among them | F1 | AUPRC | P | R "
                  "| same queue as | route s | train s |",
              "|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|"]
    for r in sorted(rows, key=lambda r: (r["seed"], r["round"], r["strategy"])):
        lines.append(f"| {r['seed']} | {r['strategy']} | {r['round']} | {r['human_labels']} | "
                     f"{r.get('queued_harmful', '–')} | {r['f1']:.3f} | {r['auprc']:.3f} | {r['precision']:.3f} | "
                     f"{r['recall']:.3f} | {r.get('identical_to') or ''} | {r.get('route_s', '')} | {r.get('train_s', '')} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
