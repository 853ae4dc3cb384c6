"""Run folders: what every trainer writes and every other part reads.

```
config.json          the Config, the framework, library versions
vocab.json           tokens in id order, tokenizer settings
weights.safetensors  canonical weights of the best validation epoch
metrics.jsonl        one line per epoch
samples.txt          text generated at the end
checkpoint.safetensors  last weights + optimizer state, with the loop's
                        counters in its metadata (exact --resume)
```

Every file is written atomically: to a temporary file in the same folder,
then renamed over the old one, so an interrupted write never leaves half a
file behind.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load, save

from data.vocab import Vocab
from wordrnn.core.config import Config
from wordrnn.core.errors import UsageError
from wordrnn.core.params import Params, check_params

CONFIG, VOCAB, WEIGHTS, METRICS, SAMPLES, CHECKPOINT = (
    "config.json", "vocab.json", "weights.safetensors", "metrics.jsonl", "samples.txt", "checkpoint.safetensors")
REQUIRED = (CONFIG, VOCAB, WEIGHTS)


def atomic_write_bytes(path: str | Path, payload: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def save_arrays(path: str | Path, arrays: dict[str, np.ndarray], meta: dict[str, Any] | None = None) -> None:
    """Safetensors, atomically; ``meta`` is stored as JSON strings in the header."""
    contiguous = {k: np.require(v, requirements="C") for k, v in arrays.items()}  # keeps 0-d scalars 0-d
    header = {k: json.dumps(v) for k, v in (meta or {}).items()}
    atomic_write_bytes(path, save(contiguous, metadata=header or None))


def load_arrays(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    path = Path(path)
    try:
        payload = path.read_bytes()
        arrays = load(payload)
    except (OSError, SafetensorError) as err:
        raise UsageError(f"cannot read {path} ({err}); the run folder is damaged, train it again") from None
    header_len = int.from_bytes(payload[:8], "little")
    header = json.loads(payload[8:8 + header_len]).get("__metadata__") or {}
    return arrays, {k: json.loads(v) for k, v in header.items()}


def save_params(path: str | Path, params: Params) -> None:
    save_arrays(path, {k: np.asarray(v, dtype=np.float32) for k, v in params.items()})


def library_versions() -> dict[str, str]:
    """Versions of the numerical libraries installed (read from metadata: nothing is imported)."""
    versions = {}
    for name in ("numpy", "torch", "jax", "jaxlib", "flax", "optax", "onnx", "onnxruntime"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def write_config(run_dir: Path, config: Config, framework: str) -> None:
    payload = {**config.to_dict(), "framework": framework, "versions": library_versions()}
    atomic_write_text(run_dir / CONFIG, json.dumps(payload, indent=2) + "\n")


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / METRICS
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_metrics(run_dir: Path, rows: list[dict[str, Any]]) -> None:
    """Rewrite the whole file (it is small) so that it always matches the checkpoint."""
    atomic_write_text(run_dir / METRICS, "".join(json.dumps(r) + "\n" for r in rows))


@dataclass
class Run:
    path: Path
    config: Config
    framework: str
    vocab: Vocab
    params: Params


def load_run(path: str | Path) -> Run:
    """Read a run folder written by any framework; checks it is complete and consistent."""
    run_dir = Path(path)
    if not run_dir.is_dir():
        raise UsageError(f"{run_dir} is not a run folder (no such directory); give a folder written by a trainer")
    missing = [name for name in REQUIRED if not (run_dir / name).is_file()]
    if missing:
        raise UsageError(
            f"{run_dir} is incomplete: {', '.join(missing)} missing; train it to the end of an epoch first"
        )
    try:
        raw = json.loads((run_dir / CONFIG).read_text())
        vocab = Vocab.from_json((run_dir / VOCAB).read_text())
    except (json.JSONDecodeError, KeyError, ValueError) as err:
        raise UsageError(f"{run_dir} has an unreadable config.json or vocab.json ({err})") from None
    config = Config.from_dict(raw)
    if config.vocab_size != len(vocab):
        raise UsageError(
            f"{run_dir}: config.json says {config.vocab_size} words but vocab.json holds {len(vocab)}"
        )
    params, _ = load_arrays(run_dir / WEIGHTS)
    check_params(params, config)
    return Run(run_dir, config, raw.get("framework", "unknown"), vocab, params)
