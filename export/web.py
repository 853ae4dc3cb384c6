"""``python -m export.web``: a static web page that writes poems from one exported ``.onnx`` file.

Writes a folder that any static host can serve, with no request to any other
host: ``index.html``, the page script (``app.mjs``), the generation module
(``wordrnn.mjs``, docs/GENERATION.md in JavaScript), onnxruntime-web's own
files copied from ``node_modules`` (the wasm bundle and its one ``.wasm``;
one wasm thread, so no cross-origin isolation headers are needed), and the
model as ``model.onnx``. ``--serve`` then serves it on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import shutil
import sys
import tempfile
from pathlib import Path

from wordrnn.core.errors import start_command

if __name__ == "__main__":
    start_command("onnxruntime")  # a missing library or a Ctrl-C during the imports: one line

from export.session import load  # noqa: E402
from wordrnn.core.errors import CommandParser, UsageError, cli  # noqa: E402
from wordrnn.core.paths import check_writable  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
WEB = ROOT / "web"
ORT_DIST = ROOT / "node_modules" / "onnxruntime-web" / "dist"
ORT_FILES = ("ort.wasm.bundle.min.mjs", "ort-wasm-simd-threaded.wasm")
PAGE_FILES = ("index.html", "app.mjs", "wordrnn.mjs")
MODEL_NAME = "model.onnx"
TYPES = {".mjs": "text/javascript", ".js": "text/javascript", ".wasm": "application/wasm",
         ".onnx": "application/octet-stream", ".html": "text/html; charset=utf-8"}


def ort_files() -> list[Path]:
    """onnxruntime-web's files for the page; ``UsageError`` saying how to install them when they are missing."""
    paths = [ORT_DIST / name for name in ORT_FILES]
    if not all(p.is_file() for p in paths):
        raise UsageError(f"onnxruntime-web is not installed in {ROOT / 'node_modules'}; "
                         f"run `make web` (or `npm ci`) in {ROOT} first")
    return paths


def check_out(out: Path, overwrite: bool) -> None:
    """Refuse an --out that is a file, lies under a file, or is a folder with contents (without --overwrite)."""
    for parent in [out, *out.parents]:
        if parent.exists() and not parent.is_dir():
            raise UsageError(f"--out {out}: {parent} is a file; give a folder path")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise UsageError(f"--out {out} is a folder that is not empty; give a new folder, or add --overwrite "
                         "to replace it")
    check_writable(out)


def write_site(model: Path, out: Path) -> list[Path]:
    """Build the folder beside ``out`` and move it into place whole: a reader never sees half a site."""
    sources = [*(WEB / name for name in PAGE_FILES), *ort_files()]
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        for source in sources:
            shutil.copyfile(source, staging / source.name)
        shutil.copyfile(model, staging / MODEL_NAME)
        staging.chmod(0o755)
        old = None
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
            out.rename(old / out.name)
        staging.rename(out)
        if old is not None:
            shutil.rmtree(old)
    except BaseException as err:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(err, OSError):  # named by the folder asked for, not by the staging folder beside it
            raise OSError(err.errno, err.strerror, str(out)) from None
        raise
    return sorted(out.iterdir())


class Handler(http.server.SimpleHTTPRequestHandler):
    """Static files with the types module scripts and wasm need; no request log on the terminal."""

    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, **TYPES}

    def log_message(self, format: str, *args) -> None:
        pass


def serve(folder: Path, port: int) -> None:
    handler = functools.partial(Handler, directory=str(folder))
    try:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    except OSError as err:
        raise UsageError(f"cannot serve on 127.0.0.1:{port} ({err.strerror}); give another --port "
                         "(0 picks a free one)") from None
    with server:
        print(f"serving {folder} at http://127.0.0.1:{server.server_address[1]}/ (Ctrl-C to stop)", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            print("stopped", file=sys.stderr)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = CommandParser(
        prog="python -m export.web",
        description="Write a static web page that generates verse from an exported model in the browser "
        "(onnxruntime-web, by docs/GENERATION.md): index.html, its scripts, onnxruntime-web's files and the "
        "model, in one folder any static host can serve. Needs the node modules: make web (or npm ci).",
    )
    parser.add_argument("--model", required=True, metavar="FILE", help="the .onnx file written by export.onnx")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder to write the page into")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it is a folder with contents")
    parser.add_argument("--serve", action="store_true", help="then serve the folder on 127.0.0.1 until Ctrl-C")
    parser.add_argument("--port", type=int, default=8000,
                        help="port for --serve (default: %(default)s; 0: any free port)")
    return parser.parse_args(argv)


@cli
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must lie between 0 and 65535, got {args.port}")
    out = Path(args.out)
    ort_files()  # the node modules first: the cheapest check that needs no model
    check_out(out, args.overwrite)
    card = load(args.model).card  # a missing, foreign or damaged file is refused here, not in the browser
    files = write_site(Path(args.model), out)
    size = sum(f.stat().st_size for f in files)
    print(f"wrote {out}: {', '.join(f.name for f in files)} ({size / 2**20:.1f} MiB; a {card.cell} "
          f"{card.config.model} model, V={card.config.vocab_size})")
    if args.serve:
        serve(out, args.port)
    elif args.port != 8000:
        print(f"note: --port {args.port} applies only with --serve; the folder is written, nothing served",
              file=sys.stderr)
    else:
        print(f"serve it with any static file server, e.g. python -m http.server -d {out} -b 127.0.0.1")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
