"""GPU catalog: `GPUType` records read from `gpus.toml`, and where the shared data directory lives."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from planner.errors import SpecError

_REPO_ROOT = Path(__file__).resolve().parents[1]
GIB = 1024**3


def data_dir() -> Path:
    """The shared data directory (gpus.toml, prices.toml, models.toml, traces/).

    Looked up in order: `$THUNDER_DATA_DIR`, `<repo>/shared/data`, `<repo>/../shared/data`, `/work/shared/data`.
    """
    candidates = []
    if env := os.environ.get("THUNDER_DATA_DIR"):
        candidates.append(Path(env))
    candidates += [_REPO_ROOT / "shared" / "data", _REPO_ROOT.parent / "shared" / "data", Path("/work/shared/data")]
    for path in candidates:
        if (path / "gpus.toml").is_file():
            return path
    tried = ", ".join(str(p) for p in candidates)
    raise SpecError(f"shared data directory not found (tried {tried}); set THUNDER_DATA_DIR to the folder with gpus.toml")


def read_toml(path: str | Path) -> dict[str, Any]:
    """Parse a TOML file; a syntax error or a missing file becomes a `SpecError` naming the path."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise SpecError(f"{path}: file not found; check the path") from None
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{path}: invalid TOML ({exc}); fix the syntax") from None


@dataclass(frozen=True, slots=True, kw_only=True)
class GPUType:
    """One accelerator type. Peak numbers are vendor figures; the cost model applies efficiency factors.

    `name` is the catalog key (e.g. "a40", "rtx-3090-ti", or "cpu" for a calibrated host device).
    """

    name: str
    memory_gib: float
    mem_bw_gbps: float
    """Peak DRAM bandwidth in GB/s (gigabytes)."""
    tflops_fp16: float
    """Dense FP16/BF16 tensor TFLOP/s with FP32 accumulate."""
    nvlink_gbps: float = 0.0
    """Total bidirectional NVLink GB/s per device (0 = none)."""
    pcie_gbps: float = 64.0
    """Host link, bidirectional GB/s."""
    description: str = ""

    def __post_init__(self) -> None:
        for field_name in ("memory_gib", "mem_bw_gbps", "tflops_fp16"):
            value = getattr(self, field_name)
            if not value > 0:
                raise SpecError(f"GPUType {self.name!r}: {field_name}={value} must be > 0")

    @property
    def memory_bytes(self) -> float:
        return self.memory_gib * GIB

    @property
    def mem_bw_bytes(self) -> float:
        """Peak memory bandwidth in bytes/s."""
        return self.mem_bw_gbps * 1e9

    @property
    def flops(self) -> float:
        """Peak dense FP16 FLOP/s."""
        return self.tflops_fp16 * 1e12

    @classmethod
    def from_mapping(cls, name: str, raw: Mapping[str, Any]) -> GPUType:
        try:
            return cls(
                name=name,
                memory_gib=float(raw["memory_gib"]),
                mem_bw_gbps=float(raw["memory_bandwidth_gbps"]),
                tflops_fp16=float(raw["fp16_tflops"]),
                nvlink_gbps=float(raw.get("nvlink_gbps", 0.0)),
                pcie_gbps=float(raw.get("pcie_gbps_bidir", 64.0)),
                description=str(raw.get("name", name)),
            )
        except KeyError as exc:
            raise SpecError(f"gpu type {name!r}: missing field {exc.args[0]!r}") from None


def load_gpu_catalog(path: str | Path | None = None) -> dict[str, GPUType]:
    """Read `gpus.toml` (default: the shared data directory) into {catalog key: GPUType}."""
    raw = read_toml(path if path is not None else data_dir() / "gpus.toml")
    return {key: GPUType.from_mapping(key, value) for key, value in raw.items() if isinstance(value, dict)}


def lookup_gpu(catalog: Mapping[str, GPUType], name: str, *, where: str) -> GPUType:
    """Catalog lookup whose error lists the known names."""
    try:
        return catalog[name]
    except KeyError:
        known = ", ".join(sorted(catalog))
        raise SpecError(f"{where}: unknown gpu type {name!r}; use one of: {known}") from None


__all__ = ["GIB", "GPUType", "data_dir", "load_gpu_catalog", "lookup_gpu", "read_toml"]
