"""Shared pieces of the benchmark scripts: compile timing, the timing loop, JSON and machine."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax

RESULTS = Path(__file__).resolve().parent / "results"


def compile_timed(fn: Callable, *args, **jit_kwargs) -> tuple[Any, float]:
    """``(compiled, seconds)``: ahead-of-time lowering and compilation, so no run is timed.

    Call the compiled object without the static arguments.
    """
    started = time.perf_counter()
    compiled = jax.jit(fn, **jit_kwargs).lower(*args).compile()
    return compiled, time.perf_counter() - started


def measure(call: Callable[[], Any], repeats: int, warmup: int = 1,
            budget_s: float | None = None) -> dict[str, Any]:
    """Median wall time of ``call()`` (blocked on its result) after ``warmup`` untimed calls.

    With ``budget_s``, stops early once that much time was spent (after at least 3 repeats), so
    that slow cases (the dense D = 12288 head) do not take minutes per row.
    """
    for _ in range(warmup):
        jax.block_until_ready(call())
    times: list[float] = []
    spent = 0.0
    for _ in range(repeats):
        started = time.perf_counter()
        jax.block_until_ready(call())
        times.append(time.perf_counter() - started)
        spent += times[-1]
        if budget_s is not None and spent > budget_s and len(times) >= 3:
            break
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
            "repeats": len(times), "warmup": warmup, "times_s": times}


def measure_train(compiled_step, state, batch: Callable[[], Any], rng: jax.Array, repeats: int,
                  warmup: int = 1) -> tuple[dict[str, Any], Any]:
    """``(timing, final state)`` of a compiled ``train_step(state, images, rng)``.

    The state is donated, so each call consumes the previous call's state; ``batch()`` gives the
    images of each step.
    """
    holder = {"state": state, "step": 0}

    def call():
        holder["step"] += 1
        holder["state"], metrics = compiled_step(holder["state"], batch(),
                                                 jax.random.fold_in(rng, holder["step"]))
        return metrics

    timing = measure(call, repeats, warmup)
    return timing, holder["state"]


def flops(compiled) -> float | None:
    """XLA's FLOP count of a compiled function (a dict in jax 0.10, a list of dicts before).

    A rolled loop (``while``) is counted once, not once per trip.
    """
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else None
    if not cost or "flops" not in cost:
        return None
    return float(cost["flops"])


def temp_bytes(compiled) -> int | None:
    """Scratch memory XLA planned for a compiled function (not counting arguments and outputs)."""
    stats = compiled.memory_analysis()
    return None if stats is None else int(stats.temp_size_in_bytes)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    """Where and under what load the figures were taken (load average: was other work running?)."""
    info: dict[str, Any] = {
        "cpu": _cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
        "jax": jax.__version__, "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "load_average_1_5_15": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    try:
        import flax

        info["flax"] = flax.__version__
    except ImportError:
        pass
    return info


def warn_if_busy() -> None:
    """Says so when other work is running: medians then mostly measure the contention."""
    if not hasattr(os, "getloadavg"):
        return
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    if load > 0.5 * cores:
        print(f"warning: load average {load:.1f} on {cores} cores: other work is running, "
              "timings will be slow and noisy (min_s in the JSON is the least affected)",
              flush=True)


def output_path(name: str, quick: bool, override: str | None = None) -> Path:
    """``results/NAME.json``; ``--quick`` writes ``NAME.quick.json`` so it cannot clobber real figures."""
    if override:
        return Path(override)
    return RESULTS / f"{name}{'.quick' if quick else ''}.json"


def write_json(path: Path, value: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(value, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return path


def table(headers: list[str], rows: list[list[Any]]) -> str:
    """A plain aligned text table (floats to 4 significant digits)."""
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        return "-" if v is None else str(v)

    cells = [[cell(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)
