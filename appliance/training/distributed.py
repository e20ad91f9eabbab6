"""Several GPUs: ``accelerate launch`` with a DeepSpeed ZeRO-2 config that cra writes.

cra has no launcher of its own: it writes ``accelerate.yaml`` and ``deepspeed.json`` into
the run folder and runs ``accelerate launch ... -m appliance.training.worker`` once per
machine; accelerate starts one process per GPU and each runs ``fit`` on its shard. ZeRO-2
only: seed 004 §3 (ZeRO-3 partitions the parameters and breaks gradient flow through the
LoRA matrices on Qwen3). The workers' progress comes back through a JSON-lines file that
rank 0 writes and this process tails.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from appliance.errors import Failed, MissingExtra
from appliance.offline import offline_env
from appliance.training.fit import FitOutcome, FitPlan, Progress, TrainProgress

ZERO_STAGE = 2


def gpu_count() -> int:
    try:
        import torch
    except ImportError:
        return 0
    return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0


def deepspeed_config() -> dict[str, object]:
    """ZeRO-2 with the trainer filling batch sizes, accumulation, clipping and precision ("auto")."""
    return {
        "zero_optimization": {"stage": ZERO_STAGE, "overlap_comm": True, "contiguous_gradients": True,
                              "reduce_scatter": True, "allgather_partitions": True},
        "bf16": {"enabled": "auto"},
        "train_micro_batch_size_per_gpu": "auto",
        "train_batch_size": "auto",
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
    }


def accelerate_config(deepspeed_file: Path, processes: int) -> str:
    """accelerate's YAML for one machine with ``processes`` GPUs and the DeepSpeed file."""
    return "\n".join([
        "compute_environment: LOCAL_MACHINE",
        "distributed_type: DEEPSPEED",
        "deepspeed_config:",
        f"  deepspeed_config_file: {json.dumps(str(deepspeed_file))}",
        "  zero3_init_flag: false",
        "machine_rank: 0",
        "num_machines: 1",
        f"num_processes: {processes}",
        "rdzv_backend: static",
        "same_network: true",
        "use_cpu: false",
        "",
    ])


def write_configs(run_dir: Path, processes: int) -> tuple[Path, Path]:
    """(accelerate.yaml, deepspeed.json) in ``run_dir``."""
    ds = run_dir / "deepspeed.json"
    ds.write_text(json.dumps(deepspeed_config(), indent=2), encoding="utf-8")
    acc = run_dir / "accelerate.yaml"
    acc.write_text(accelerate_config(ds, processes), encoding="utf-8")
    return acc, ds


def launch_command(accelerate_yaml: Path, plan_file: Path, outcome_file: Path) -> list[str]:
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(accelerate_yaml),
            "-m", "appliance.training.worker", str(plan_file), str(outcome_file)]


def launch(plan: FitPlan, run_dir: Path, processes: int, progress: Progress | None = None) -> FitOutcome:
    """Run ``fit(plan)`` on ``processes`` GPUs through accelerate; the outcome of rank 0."""
    if not _has("accelerate"):
        raise MissingExtra("training on several GPUs", "train", detail="accelerate is not installed")
    if not _has("deepspeed"):
        raise MissingExtra("training on several GPUs", "gpu", detail="deepspeed is not installed")
    acc, ds = write_configs(run_dir, processes)
    plan.deepspeed = str(ds)
    plan.progress_file = str(run_dir / "progress.jsonl")
    Path(plan.progress_file).unlink(missing_ok=True)
    plan_file, outcome_file = run_dir / "plan.json", run_dir / "outcome.json"
    plan_file.write_text(plan.to_json(), encoding="utf-8")
    outcome_file.unlink(missing_ok=True)
    log = run_dir / "launch.log"
    with log.open("w", encoding="utf-8") as out:
        proc = subprocess.Popen(launch_command(acc, plan_file, outcome_file), stdout=out, stderr=subprocess.STDOUT,
                                env=offline_env())
        seen = 0
        while True:
            try:
                code = proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                code = None
            seen = _tail(Path(plan.progress_file), seen, progress)
            if code is not None:
                break
            time.sleep(0.1)
    if not outcome_file.is_file():
        raise Failed(f"accelerate launch exited with {code} and no outcome", path=log,
                     hint=f"see {log}")
    return FitOutcome(**json.loads(outcome_file.read_text(encoding="utf-8")))


def _tail(path: Path, seen: int, progress: Progress | None) -> int:
    if progress is None or not path.is_file():
        return seen
    lines = path.read_text(encoding="utf-8").splitlines()
    for line in lines[seen:]:
        try:
            progress(TrainProgress(**json.loads(line)))
        except (ValueError, TypeError):
            continue
    return len(lines)


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None
