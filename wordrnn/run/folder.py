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
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save

from data.vocab import Vocab
from wordrnn.core.config import Config, check_saved_settings, marked
from wordrnn.core.errors import DiskFull, UsageError
from wordrnn.core.memory import human_bytes
from wordrnn.core.optimizers import NOT_STARTED, get_optimizer
from wordrnn.core.params import Params, check_params, param_shapes
from wordrnn.core.paths import REPORT_RUNS, TMP_SUFFIX, check_writable

CONFIG, VOCAB, WEIGHTS, METRICS, SAMPLES, CHECKPOINT = (
    "config.json", "vocab.json", "weights.safetensors", "metrics.jsonl", "samples.txt", "checkpoint.safetensors")
REQUIRED = (CONFIG, VOCAB, WEIGHTS)
RUN_FILES = (CONFIG, VOCAB, WEIGHTS, METRICS, SAMPLES, CHECKPOINT)
# The figures of a metrics.jsonl row that commands read, each a finite number >= 0 where present (a loss, a
# perplexity, seconds); every row has its epoch and val_loss.
ROW_NUMBERS = ("train_loss", "val_loss", "val_ppl", "seconds")
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
        if isinstance(err, OSError) and tmp is not None and err.filename == tmp:
            # Named by the file asked for (a folder in its place, say), not by the temporary file beside it.
            raise OSError(err.errno, err.strerror, str(path)) from None
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


def check_run_dir(run_dir: str | Path) -> None:
    """``check_out_dir`` for a run folder, and none of the run's own files a folder: refused before any work."""
    check_out_dir(run_dir)
    for name in RUN_FILES:
        if (Path(run_dir) / name).is_dir():
            raise UsageError(f"{Path(run_dir) / name} is a folder, where the run keeps its file {name}; move it "
                             "away, or choose another --out")


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
    """A safetensors file's arrays and the metadata wordrnn wrote in its header (JSON values under its keys).

    A value that is not JSON was written by another tool (torch and Hugging Face write ``{"format": "pt"}``)
    and is left out: the reader of each file kind checks that what it needs is there.
    """
    path = Path(path)
    try:
        with safe_open(path, framework="numpy") as f:
            header = f.metadata() or {}
            arrays = {name: f.get_tensor(name) for name in f.keys()}
    except (OSError, SafetensorError, ValueError, TypeError) as err:
        raise UsageError(f"cannot read {path} ({err}); the run folder is damaged, train it again") from None
    parsed = {name: _json_or_none(value) for name, value in header.items()}
    return arrays, {name: value for name, value in parsed.items() if value is not None}


def _json_or_none(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def read_weights(path: str | Path, config: Config) -> Params:
    """A weights file: float32 arrays, finite, with the names and shapes ``config``'s model has."""
    params, _ = load_arrays(path)
    check_weights(params, config, path)
    return params


def check_weights(params: Params, config: Config, path: str | Path) -> None:
    """Weights read from ``path``: wordrnn writes every one as finite float32 in the shapes of ``config``."""
    check_float32(params, path)
    check_finite(params, path)
    check_params(params, config)


def check_float32(arrays: dict[str, np.ndarray], path: str | Path) -> None:
    """Refuse weights of another dtype (float16, integers): no wordrnn trainer writes them, and read as they are
    they would only show as logits that differ."""
    wrong = [f"{name} as {np.asarray(value).dtype}" for name, value in arrays.items()
             if np.asarray(value).dtype != np.float32]
    if wrong:
        raise UsageError(f"{path} holds {', '.join(wrong[:3])}{'...' if len(wrong) > 3 else ''}, and wordrnn "
                         "weights are float32: the file was written by another tool or damaged; restore it or "
                         "train the run again")


@dataclass
class Checkpoint:
    """What ``--resume`` continues from: the last weights, the optimizer state and the loop's counters."""

    params: Params
    optimizer: dict[str, np.ndarray]
    epoch: int
    step: int
    best: dict[str, Any]  # val_loss, epoch, bad_epochs


def read_checkpoint(path: str | Path, config: Config) -> Checkpoint:
    """A checkpoint: its counters (in the header), weights and optimizer state, each checked."""
    arrays, counters = load_arrays(path)
    problem = _counters_problem(counters)
    if problem:
        raise UsageError(f"{path} does not hold the counters a wordrnn trainer writes ({problem}): it was written "
                         "by another tool or damaged; restore it, or train the run again with --overwrite")
    counts = get_optimizer(config.optimizer).scalar_names
    check_float32({k: v for k, v in arrays.items() if k not in counts}, path)  # weights and optimizer slots alike
    check_finite(arrays, path)
    params = {k[len("param."):]: v for k, v in arrays.items() if k.startswith("param.")}
    check_params(params, config)
    optimizer = check_optimizer_arrays({k: v for k, v in arrays.items() if not k.startswith("param.")}, config)
    return Checkpoint(params, optimizer, counters["epoch"], counters["step"], counters["best"])


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _figure(value: Any) -> bool:
    return _number(value) and math.isfinite(value) and value >= 0


def _whole(value: Any, least: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


def _counters_problem(counters: dict[str, Any]) -> str | None:
    """What is wrong with a checkpoint's counters, or None."""
    missing = [name for name in ("epoch", "step", "best") if name not in counters]
    if missing:
        return f"its header lacks {', '.join(missing)}"
    epoch, step, best = counters.get("epoch"), counters.get("step"), counters.get("best")
    if not _whole(epoch, 1) or not _whole(step, 0):
        return f"epoch {epoch!r} and step {step!r}, where a count of epochs from 1 and of steps from 0 belong"
    if not (isinstance(best, dict) and _whole(best.get("epoch"), 0) and best["epoch"] <= epoch
            and _whole(best.get("bad_epochs"), 0) and _figure(best.get("val_loss"))):
        return f"best {best!r}, where the best epoch's val_loss, epoch and bad_epochs belong"
    return None


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
    """metrics.jsonl: one JSON object a line, each with its whole-number ``epoch``, its ``val_loss``, and the
    figures commands read (``ROW_NUMBERS``) finite and >= 0; no file: no rows."""
    path = Path(run_dir) / METRICS
    if not path.exists():
        return []
    try:
        lines = path.read_text().splitlines()
    except (OSError, ValueError) as err:
        raise UsageError(f"{path} is unreadable ({err}); restore it or train the run again") from None
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        row = _json_or_none(line)
        if not (isinstance(row, dict) and _whole(row.get("epoch"), 1)
                and "val_loss" in row and all(_figure(row[name]) for name in ROW_NUMBERS if name in row)):
            raise UsageError(f"{path}, line {number}, is not an epoch's row ({line[:40]!r}); the file was edited or "
                             "damaged: restore it or train the run again")
        rows.append(row)
    return rows


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
    if (run_dir / CONFIG).is_file() and (run_dir / VOCAB).is_file():
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
    params = read_weights(run_dir / WEIGHTS, config)
    return Run(run_dir, config, raw.get("framework", "unknown"), vocab, params)


def _load_ensemble(run_dir: Path, raw: dict[str, Any], config: Config, vocab: Vocab) -> Run:
    """An ensemble's folder: every member complete, each the ensemble's model from its own seed, one vocabulary."""
    check_members_folder(run_dir, config)
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


def check_members_folder(run_dir: Path, config: Config) -> None:
    """An ensemble's config.json over one model's files (weights, checkpoint) and no members: it was edited."""
    if config.ensemble > 1 and not (run_dir / MEMBERS).is_dir() and any(
            (run_dir / name).is_file() for name in (WEIGHTS, CHECKPOINT)):
        raise UsageError(f"{run_dir / CONFIG} says ensemble {config.ensemble}, but {run_dir} holds one model's "
                         f"files and no {MEMBERS}/ folder; the file was edited or damaged: restore it or train the "
                         "run again")


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
    check_saved_settings({"tokenizer": vocab.tokenizer, "min_freq": vocab.min_freq}, str(run_dir / VOCAB))
    if config.vocab_size != len(vocab):
        raise UsageError(f"{run_dir}: config.json says {config.vocab_size} words but vocab.json holds {len(vocab)}; "
                         "one of them was edited or damaged: restore it or train the run again")
    return raw, config, vocab


def check_optimizer_arrays(arrays: dict[str, np.ndarray], config: Config) -> dict[str, np.ndarray]:
    """The one check of a checkpoint's optimizer state, made before any backend loads it.

    The checkpoint must hold exactly what ``wordrnn.core.optimizers`` names for the run's optimizer:
    its step count (a whole number, 0 or more), its other counters (NT-ASGD's ``t0``: -1 up to the step count) and
    every slot of every parameter, shaped like it (SGD: nothing). Anything else was not written by a run of this
    optimizer and model and is refused. Returns the arrays normalized: the counts 0-d int64, the slots float32.
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
        step = np.asarray(arrays[spec.step_name])
        if step.size != 1 or step.dtype.kind not in "iu" or int(step.reshape(())) < 0:
            raise UsageError(f"the checkpoint's {spec.step_name} is {step.dtype} {step.reshape(-1)[:3].tolist()}, "
                             "where a count of steps (one whole number, 0 or more) belongs: it was damaged; train "
                             "this run again")
        checked[spec.step_name] = step.astype(np.int64).reshape(())
    for counter in spec.counters:  # a step count, or NOT_STARTED, never past the steps taken
        key = spec.counter_name(counter)
        value = np.asarray(arrays[key])
        steps = int(checked.get(spec.step_name, 0))
        if value.size != 1 or value.dtype.kind not in "iu" or not NOT_STARTED <= int(value.reshape(())) <= steps:
            raise UsageError(f"the checkpoint's {key} is {value.dtype} {value.reshape(-1)[:3].tolist()}, where a "
                             f"step count from {NOT_STARTED} (not yet) to {spec.step_name} ({steps}) belongs: it "
                             "was damaged; train this run again")
        checked[key] = value.astype(np.int64).reshape(())
    for slot in spec.slots:
        for name, shape in shapes.items():
            key = spec.slot_name(slot, name)
            value = np.asarray(arrays[key])
            if value.shape != tuple(shape):
                raise UsageError(f"the checkpoint's {key} has shape {value.shape}, the model needs "
                                 f"{tuple(shape)}: it was written by another run; train this one again")
            checked[key] = value.astype(np.float32, copy=False)
    return checked
