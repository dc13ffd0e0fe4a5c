"""How well FastCAV finds the four synthetic concepts in b0 models trained by different recipes, over several
synthetic draws: each (recipe, data seed) is synthesized, trained (`mnet train`) and its CAVs trained
(`mnet concepts train` on the demo's concept sets, with embeddings at the size the model was trained at and at
the demo's export size, 224 px), in parallel processes.

    python studies/cav_study.py OUT [--seeds 0,7,3] [--recipes demo,long128,long128_50ep,long224] [--deadline-s 600]

Writes OUT/cav_study.json (updated as each run finishes) and prints a table. Needs the `train` extra; a CUDA
GPU makes the longer recipes take a minute instead of an hour.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

RECIPES = {
    "smoke": {"count": 36, "size": 64, "train": ["--epochs", "1", "--image-size", "64", "--batch-size", "8"]},
    "short": {"count": 480, "size": 128, "train": ["--epochs", "6", "--image-size", "128", "--batch-size", "16",
                                                   "--lr", "1e-3"]},
    "demo": {"count": 1200, "size": 128, "train": ["--epochs", "12", "--image-size", "128", "--batch-size", "16",
                                                  "--lr", "1e-3"]},
    "long128": {"count": 2400, "size": 128, "train": ["--epochs", "20", "--image-size", "128", "--batch-size", "32",
                                                      "--lr", "1e-3"]},
    "long128_50ep": {"count": 2400, "size": 128, "train": ["--epochs", "50", "--image-size", "128",
                                                           "--batch-size", "32", "--lr", "1e-3"]},
    "long224": {"count": 2000, "size": 224, "train": ["--epochs", "15", "--image-size", "224", "--batch-size", "32",
                                                      "--lr", "1e-3"]},
}
CONCEPT_SET_SIZE = 224
EXPORT_SIZE = 224
MNET = [sys.executable, "-c", "from melanomanet.cli import app; app()"]


def synthesize(job: tuple[str, int, int, int]) -> str:
    from melanomanet.data.synth import write_dataset

    folder, count, seed, size = job
    if not (Path(folder) / "ISIC_2019_Training_GroundTruth.csv").exists():
        write_dataset(folder, count, seed, size)
    return folder


def cav_sizes(recipe: str) -> list[int]:
    """Embedding sizes the CAVs are trained at: the model's training size, and the demo's export size."""
    return sorted({RECIPES[recipe]["size"], EXPORT_SIZE})


def run_commands(recipe: str, seed: int, out: Path, concepts: Path, workers: int) -> subprocess.Popen:
    data, run = out / f"data-{recipe}-{seed}", out / f"run-{recipe}-{seed}"
    train = MNET + ["train", "--data", str(data), "--out", str(run), "--seed", str(seed), "--workers", str(workers),
                    *RECIPES[recipe]["train"]]
    cavs = [MNET + ["concepts", "train", "--checkpoint", str(run / "best.safetensors"), "--concepts", str(concepts),
                    "-o", str(run / f"cavs-{size}.safetensors"), "--json", str(run / f"cavs-{size}.json"),
                    "--image-size", str(size)] for size in cav_sizes(recipe)]
    environment = {**os.environ, "OMP_NUM_THREADS": "2", "PYTHONUNBUFFERED": "1"}
    script = " && ".join(shlex.join(command) for command in [train, *cavs])
    with open(out / f"log-{recipe}-{seed}.txt", "w") as log:  # the child keeps its own copy of the handle
        return subprocess.Popen(["bash", "-c", script], stdout=log,
                                stderr=subprocess.STDOUT, env=environment, start_new_session=True)


def stop(process: subprocess.Popen) -> None:
    """Kill the run's whole process group (bash, the trainer, its data-loading workers)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)


def collect(recipe: str, seed: int, out: Path, returncode: int, seconds: float) -> dict:
    run = out / f"run-{recipe}-{seed}"
    entry = {"returncode": returncode, "seconds": round(seconds, 1)}
    if (run / "history.json").exists():
        history = json.loads((run / "history.json").read_text())
        entry["best_val_balanced_accuracy"] = max(row["val_balanced_accuracy"] for row in history)
        entry["history"] = history
    for size in cav_sizes(recipe):
        if (run / f"cavs-{size}.json").exists():
            concepts = json.loads((run / f"cavs-{size}.json").read_text())["concepts"]
            entry.setdefault("concepts", {})[str(size)] = {
                name: {key: row[key] for key in ("fastcav_accuracy", "sgdcav_accuracy", "cosine_fast_vs_sgd",
                                                 "probe_accuracy")} for name, row in concepts.items()}
    return entry


def print_table(results: dict) -> None:
    print(f"{'recipe':<12} {'seed':>4} {'val bal':>7} {'embed px':>8}  FastCAV (SGD-CAV, LDA probe) held-out accuracy "
          "per concept")
    for recipe, seeds in results.items():
        for seed, entry in seeds.items():
            accuracy = entry.get("best_val_balanced_accuracy", float("nan"))
            for size, concepts in entry.get("concepts", {"-": {}}).items():
                cells = "  ".join(f"{name} {row['fastcav_accuracy']:.3f} ({row['sgdcav_accuracy']:.3f}, "
                                  f"probe {row['probe_accuracy']:.3f})" for name, row in concepts.items())
                print(f"{recipe:<12} {seed:>4} {accuracy:>7.3f} {size:>8}  {cells or f'failed: {entry}'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--seeds", default="0,7,3")
    parser.add_argument("--recipes", default="demo,long128,long128_50ep,long224")
    parser.add_argument("--concept-count", type=int, default=100)
    parser.add_argument("--parallel", type=int, default=6, help="Runs trained at the same time.")
    parser.add_argument("--workers", type=int, default=2, help="Data-loading workers per run.")
    parser.add_argument("--deadline-s", type=float, default=600, help="Stop waiting for runs after this long.")
    args = parser.parse_args()
    started = time.monotonic()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    seeds = [int(s) for s in args.seeds.split(",")]
    recipes = args.recipes.split(",")
    concepts = out / "concepts"
    jobs = [(str(out / f"data-{r}-{s}"), RECIPES[r]["count"], s, RECIPES[r]["size"]) for r in recipes for s in seeds]
    with ProcessPoolExecutor(max_workers=os.cpu_count()) as pool:
        concept_job = None
        if not concepts.is_dir():
            from melanomanet.concepts import write_concept_sets

            concept_job = pool.submit(write_concept_sets, concepts, args.concept_count, 0, CONCEPT_SET_SIZE)
        list(pool.map(synthesize, jobs))
        if concept_job is not None:
            concept_job.result()
    print(f"synthesized {len(jobs)} datasets and the concept sets in {time.monotonic() - started:.0f} s", flush=True)
    pending = [(r, s) for r in recipes for s in seeds]
    running: dict[tuple[str, int], tuple[subprocess.Popen, float]] = {}
    results: dict[str, dict[str, dict]] = {r: {} for r in recipes}
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        while pending or running:
            while pending and len(running) < args.parallel:
                recipe, seed = pending.pop(0)
                running[(recipe, seed)] = (run_commands(recipe, seed, out, concepts, args.workers), time.monotonic())
            overdue = time.monotonic() - started > args.deadline_s
            for key, (process, since) in list(running.items()):
                if process.poll() is None and not overdue:
                    continue
                stop(process)
                del running[key]
                results[key[0]][str(key[1])] = collect(*key, out, process.wait(), time.monotonic() - since)
                (out / "cav_study.json").write_text(json.dumps(results, indent=1))
                print(f"{key[0]} seed {key[1]}: finished (code {process.returncode}) after "
                      f"{time.monotonic() - since:.0f} s", flush=True)
            if overdue:
                for recipe, seed in pending:
                    results[recipe][str(seed)] = {"returncode": None, "note": "not started before the deadline"}
                pending = []
            time.sleep(1)
    finally:
        for process, _ in running.values():
            stop(process)
    (out / "cav_study.json").write_text(json.dumps(results, indent=1))
    print_table(results)


if __name__ == "__main__":
    main()
