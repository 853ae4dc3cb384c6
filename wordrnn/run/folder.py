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

An ensemble (``config.json`` says ``ensemble`` N > 1) keeps its members' weights in ``members/0`` ..
``members/N-1``, each a complete run folder of its own; the top folder holds config.json, vocab.json,
the ensemble's metrics (members' probabilities averaged) and samples, and no weights.

Every file is written atomically: to a temporary file in the same folder,
then renamed over the old one, so an interrupted write never leaves half a
file behind.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load, save

from data.vocab import Vocab
from wordrnn.core.config import Config, marked
from wordrnn.core.errors import DiskFull, UsageError
from wordrnn.core.memory import human_bytes
from wordrnn.core.optimizers import get_optimizer
from wordrnn.core.params import Params, check_params, param_shapes
from wordrnn.core.paths import REPORT_RUNS, TMP_SUFFIX, check_writable

CONFIG, VOCAB, WEIGHTS, METRICS, SAMPLES, CHECKPOINT = (
    "config.json", "vocab.json", "weights.safetensors", "metrics.jsonl", "samples.txt", "checkpoint.safetensors")
REQUIRED = (CONFIG, VOCAB, WEIGHTS)
MEMBERS = "members"  # an ensemble's member k is the run folder MEMBERS/k
REPORT_MARKERS = ("REPORT.md", "results.json")  # what tells the report folder of a comparison from a run


def atomic_write_bytes(path: str | Path, payload: bytes) -> None:
    """Write ``payload`` to ``path`` through a temporary file and a rename.

    A full disk raises ``DiskFull`` naming the file and the space it needs; the
    old file is untouched and the temporary file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
        with os.fdopen(fd, "wb") as f:
            _write_all(f, payload, path)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    except BaseException as err:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFull(_disk_full_message(path, len(payload))) from None
        raise


def _write_all(f, payload: bytes, target: Path) -> None:
    """The one place bytes reach the disk, bound for ``target`` (a test replaces it to simulate a full disk)."""
    f.write(payload)
    f.flush()
    os.fsync(f.fileno())


def _disk_full_message(path: Path, needed: int) -> str:
    free = shutil.disk_usage(path.parent).free
    kept = f"the previous {path.name} is intact" if path.exists() else f"no {path.name} was written"
    return (f"the disk is full: writing {path} needs {human_bytes(needed)}, {human_bytes(free)} is free there; "
            f"{kept}. Free some space and run the command again")


def _file_above(path: Path) -> Path | None:
    """The first existing non-folder among ``path``'s parents (a folder cannot be made under a file)."""
    for parent in path.parents:
        if parent.exists():
            return None if parent.is_dir() else parent
    return None


def check_out_dir(path: str | Path, flag: str = "--out") -> None:
    """Refuse, before any work, an output folder that is a file, would lie under one, or cannot be written."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{flag} {path} is a file, not a folder; give a folder name (it will be created)")
    above = _file_above(path)
    if above is not None:
        raise UsageError(f"{flag} {path} lies under {above}, which is a file; give a path inside a folder")
    check_writable(path, flag)


def check_out_file(path: str | Path, overwrite: bool, flag: str = "--out") -> None:
    """Refuse, before any work, an output file under a file, a folder, or (without --overwrite) an existing file."""
    path = Path(path)
    above = _file_above(path)
    if above is not None:
        raise UsageError(f"{flag} {path} lies under {above}, which is a file; give a path inside a folder")
    if path.is_dir():
        raise UsageError(f"{flag} {path} is a folder; give a file name inside it")
    if path.exists() and not overwrite:
        raise UsageError(f"{path} already exists; pass --overwrite to replace it, or choose another {flag}")
    check_writable(path, flag)


def remove_orphans(folder: str | Path) -> list[Path]:
    """Delete temporary files that a killed write left in ``folder``; returns what was removed."""
    removed = []
    for tmp in Path(folder).glob(f".*{TMP_SUFFIX}"):
        if tmp.is_file():
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


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


def check_finite(arrays: dict[str, np.ndarray], path: str | Path) -> None:
    """Refuse a weights file holding NaN or infinity: training never saves one (the divergence guard stops
    it first), so such a file was damaged after it was written, and no setting of the run is to blame."""
    bad = [name for name, value in arrays.items()
           if np.issubdtype(np.asarray(value).dtype, np.floating) and not np.isfinite(value).all()]
    if bad:
        raise UsageError(f"{path} is damaged: {', '.join(bad[:3])}{'...' if len(bad) > 3 else ''} "
                         "holds NaN or infinite values, which training never saves; restore the file "
                         "or train the run again with --overwrite")


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
    payload = {**config.to_json_dict(), "framework": framework, "versions": library_versions()}
    atomic_write_text(run_dir / CONFIG, json.dumps(payload, indent=2) + "\n")


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / METRICS
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_metrics(run_dir: Path, rows: list[dict[str, Any]]) -> None:
    """Rewrite the whole file (it is small) so that it always matches the checkpoint."""
    atomic_write_text(run_dir / METRICS, "".join(json.dumps(r) + "\n" for r in rows))


def member_dir(run_dir: str | Path, k: int) -> Path:
    """The run folder of an ensemble's member ``k``."""
    return Path(run_dir) / MEMBERS / str(k)


def remove_members(run_dir: str | Path, keep: int) -> None:
    """Delete the member folders ``keep`` and beyond that an earlier ensemble left (a fresh run replaces it)."""
    folder = Path(run_dir) / MEMBERS
    if not folder.is_dir():
        return
    for child in folder.iterdir():
        if child.is_dir() and not (child.name.isdigit() and int(child.name) < keep):
            shutil.rmtree(child)
    if keep <= 1:
        shutil.rmtree(folder, ignore_errors=True)


@dataclass
class Run:
    path: Path
    config: Config
    framework: str
    vocab: Vocab
    params: Params  # an ensemble's are its members': empty here
    members: tuple[Run, ...] = ()  # an ensemble's members, in seed order; () for a single model

    @property
    def member_params(self) -> list[Params]:
        """The weights of every member: one set for a single model."""
        return [m.params for m in self.members] if self.members else [self.params]


def load_run(path: str | Path) -> Run:
    """Read a run folder written by any framework; checks it is complete and consistent."""
    run_dir = Path(path)
    if not run_dir.is_dir():
        raise UsageError(f"{run_dir} is not a run folder (no such directory); give a folder written by a trainer")
    if (run_dir / CONFIG).is_file() and (run_dir / VOCAB).is_file() and not (run_dir / WEIGHTS).is_file():
        raw, config, vocab = read_settings(run_dir)
        if config.ensemble > 1:
            return _load_ensemble(run_dir, raw, config, vocab)
    missing = [name for name in REQUIRED if not (run_dir / name).is_file()]
    if missing and any((run_dir / name).is_file() for name in REPORT_MARKERS):
        raise UsageError(_report_folder_message(run_dir))
    if missing:
        raise UsageError(
            f"{run_dir} is incomplete: {', '.join(missing)} missing; train it to the end of an epoch first"
        )
    raw, config, vocab = read_settings(run_dir)
    if config.vocab_size != len(vocab):
        raise UsageError(
            f"{run_dir}: config.json says {config.vocab_size} words but vocab.json holds {len(vocab)}"
        )
    params, _ = load_arrays(run_dir / WEIGHTS)
    check_finite(params, run_dir / WEIGHTS)
    check_params(params, config)
    return Run(run_dir, config, raw.get("framework", "unknown"), vocab, params)


def _load_ensemble(run_dir: Path, raw: dict[str, Any], config: Config, vocab: Vocab) -> Run:
    """An ensemble's folder: every member complete, each the ensemble's model from its own seed, one vocabulary."""
    members = []
    for k in range(config.ensemble):
        folder = member_dir(run_dir, k)
        if not (folder / WEIGHTS).is_file():
            raise UsageError(f"{run_dir} is an ensemble of {config.ensemble} whose member {k} ({folder}) has no "
                             "complete epoch; continue training it with --resume")
        member = load_run(folder)
        differs = _differences(member.config, config.member(k))
        if differs:
            raise UsageError(f"{folder} is not member {k} of the ensemble in {run_dir} (it differs in "
                             f"{', '.join(differs)}); train the ensemble again")
        if member.vocab.tokens != vocab.tokens:
            raise UsageError(f"{folder} has another vocabulary than the ensemble in {run_dir}; train it again")
        members.append(member)
    return Run(run_dir, config, raw.get("framework", "unknown"), vocab, {}, tuple(members))


def _differences(got: Config, want: Config) -> list[str]:
    """The settings in which two configs differ, those a resume may change aside."""
    mine = got.to_dict()
    return [name for name, value in want.to_dict().items() if name not in marked("resumable") and mine[name] != value]


def _report_folder_message(report: Path) -> str:
    runs = sorted(p for p in (report / REPORT_RUNS).glob("*") if (p / WEIGHTS).is_file())
    which = (f"give one of its run folders, such as {', '.join(map(str, runs[:3]))}" if runs
             else "it holds no complete run folder; give a folder written by a trainer")
    return f"{report} is a report folder (REPORT.md of python -m wordrnn.bench.compare), not a run; {which}"


def read_settings(run_dir: Path) -> tuple[dict[str, Any], Config, Vocab]:
    """config.json (raw and as a ``Config``) and vocab.json, each checked for shape and types."""
    try:
        raw = json.loads((run_dir / CONFIG).read_text())
    except (OSError, ValueError) as err:
        raise UsageError(f"{run_dir / CONFIG} is unreadable ({err}); restore it or train the run again") from None
    config = Config.from_dict(raw, source=str(run_dir / CONFIG))
    try:
        vocab = Vocab.from_json((run_dir / VOCAB).read_text())
    except (OSError, ValueError) as err:
        raise UsageError(f"{run_dir / VOCAB} is unreadable ({err}); restore it or train the run again") from None
    return raw, config, vocab


def check_optimizer_arrays(arrays: dict[str, np.ndarray], config: Config) -> dict[str, np.ndarray]:
    """The one check of a checkpoint's optimizer state, made before any backend loads it.

    The checkpoint must hold exactly what ``wordrnn.core.optimizers`` names for the run's optimizer:
    its step count and every slot of every parameter, shaped like it (SGD: nothing). Anything else
    was not written by a run of this optimizer and model and is refused. Returns the arrays
    normalized: the step a 0-d int64, the slots float32.
    """
    spec = get_optimizer(config.optimizer)
    shapes = param_shapes(config)
    wanted = spec.state_names(list(shapes))
    stray = sorted(set(arrays) - set(wanted))
    if stray:
        keeps = "which keeps none" if not wanted else f"which keeps only {spec.name}.*"
        raise UsageError(f"the checkpoint holds optimizer state ({', '.join(stray[:3])}...) but the run uses "
                         f"--optimizer {spec.name}, {keeps}: it was written by another run; train this one again")
    missing = [k for k in wanted if k not in arrays]
    if missing:
        raise UsageError(f"the checkpoint lacks the {spec.label} state {', '.join(missing[:3])}"
                         f"{'...' if len(missing) > 3 else ''}: it was not written by an {spec.label} run of this "
                         f"model, so it cannot be resumed with --optimizer {spec.name}")
    checked = {}
    if spec.counts_steps:
        checked[spec.step_name] = np.asarray(arrays[spec.step_name], dtype=np.int64).reshape(())
    for slot in spec.slots:
        for name, shape in shapes.items():
            key = spec.slot_name(slot, name)
            value = np.asarray(arrays[key])
            if value.shape != tuple(shape):
                raise UsageError(f"the checkpoint's {key} has shape {value.shape}, the model needs "
                                 f"{tuple(shape)}: it was written by another run; train this one again")
            checked[key] = value.astype(np.float32, copy=False)
    return checked
