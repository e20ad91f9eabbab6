"""GGUF copies of models and adapters, made by llama.cpp's own converters.

llama.cpp loads a LoRA only as GGUF, written by ``convert_lora_to_gguf.py`` (and a base
model by ``convert_hf_to_gguf.py``) from a llama.cpp source tree; the scripts use the
``gguf`` package bundled beside them (``gguf-py/``). No wheel ships them, so cra finds a
source tree the user brought, never a download: ``[training] llama_cpp_dir`` (a llama.cpp
checkout, or the llama-cpp-python sdist that vendors one, unpacked once into
``var/cache/``), else ``$CRA_LLAMA_CPP_SRC``.

The converters run in a child process with the hub switched off (a converter that reaches
for the network must fail, not download). A tokenizer trained locally has a BPE
pre-tokenizer the converter cannot recognise by hash; ``pre_tokenizer`` names it (e.g.
``gpt-2`` for byte-level BPE with GPT-2's split), patched in-process so the source tree
stays pristine.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from appliance.config import Home, TrainingConfig
from appliance.errors import ConfigError, Failed
from appliance.offline import offline_env

LORA_SCRIPT = "convert_lora_to_gguf.py"
MODEL_SCRIPT = "convert_hf_to_gguf.py"
_WANTED = (MODEL_SCRIPT, LORA_SCRIPT, "conversion/", "gguf-py/")
_SDIST_ROOT = "vendor/llama.cpp/"
CONVERT_TIMEOUT_S = 3600


def find_converter(home: Home, config: TrainingConfig) -> Path:
    """The folder holding llama.cpp's converters; ``ConfigError`` saying how to provide one."""
    chosen = config.llama_cpp_dir or os.environ.get("CRA_LLAMA_CPP_SRC", "")
    if not chosen:
        raise ConfigError(
            "the GGUF copy of an adapter needs llama.cpp's convert_lora_to_gguf.py, and none is configured",
            hint="set [training] llama_cpp_dir in cra.toml to a llama.cpp checkout or the llama-cpp-python "
                 "sdist (.tar.gz), or set [training] gguf = false to skip the GGUF copy")
    path = Path(chosen).expanduser()
    if not path.is_absolute():
        path = home.root / path
    if path.is_file() and path.name.endswith(".tar.gz"):
        return _unpacked(home, path)
    if not (path / LORA_SCRIPT).is_file():
        raise ConfigError(f"{path} has no {LORA_SCRIPT}",
                          hint="point [training] llama_cpp_dir at a llama.cpp checkout or the llama-cpp-python sdist")
    return path


def _unpacked(home: Home, sdist: Path) -> Path:
    dest = home.var / "cache" / sdist.name.removesuffix(".tar.gz")
    if (dest / LORA_SCRIPT).is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        staging = Path(tmp) / "out"
        extract_converter(sdist, staging)
        os.replace(staging, dest)
    return dest


def extract_converter(sdist: Path, dest: Path) -> None:
    """Copy the converters out of a llama-cpp-python sdist (``vendor/llama.cpp/``) into ``dest``."""
    try:
        with tarfile.open(sdist) as tar:
            for member in tar.getmembers():
                parts = member.name.split("/", 1)
                if len(parts) < 2 or not parts[1].startswith(_SDIST_ROOT):
                    continue
                rel = parts[1][len(_SDIST_ROOT):]
                if not (member.isfile() and rel.startswith(_WANTED)):
                    continue
                target = dest / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                src = tar.extractfile(member)
                assert src is not None
                target.write_bytes(src.read())
    except (tarfile.TarError, OSError) as exc:
        raise ConfigError(f"cannot read the sdist: {exc}", path=sdist) from exc
    if not (dest / LORA_SCRIPT).is_file():
        raise ConfigError(f"{sdist.name} has no {_SDIST_ROOT}{LORA_SCRIPT}", path=sdist,
                          hint="use the llama-cpp-python sdist (llama_cpp_python-X.Y.Z.tar.gz)")


# Runs a converter script with its own folder and gguf-py first on sys.path; with a
# pre-tokenizer name, the conversion is told it instead of guessing it from a hash.
_WRAPPER = """
import runpy, sys
src, script, pre = sys.argv[1], sys.argv[2], sys.argv[3]
sys.path[:0] = [src, src + "/gguf-py"]
if pre:
    import conversion.base as base
    import conversion.llama as llama
    base.TextModel.get_vocab_base_pre = lambda self, tokenizer: pre
    # LlamaModel tries sentencepiece first; a tokenizer.json BPE goes to the GPT-2 style vocab.
    llama.LlamaModel.set_vocab = lambda self: self._set_vocab_gpt2()
sys.argv = [script] + sys.argv[4:]
runpy.run_path(src + "/" + script, run_name="__main__")
"""


def _run(converter: Path, script: str, args: list[str], log: Path, *, pre_tokenizer: str = "") -> None:
    env = offline_env()
    env.pop("NO_LOCAL_GGUF", None)  # the converter must use the gguf-py beside it
    log.parent.mkdir(parents=True, exist_ok=True)
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _WRAPPER, str(converter), script, pre_tokenizer, *args],
            check=False, capture_output=True, text=True, env=env, timeout=CONVERT_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as exc:
        raise Failed(f"{script} took more than {CONVERT_TIMEOUT_S} s", path=log) from exc
    log.write_text(proc.stdout + proc.stderr, encoding="utf-8")
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise Failed(f"{script} failed: {tail[0][:300]}", path=log, hint=f"the whole log is in {log}")


def convert_lora(converter: Path, peft_dir: Path, base_dir: Path, out: Path, *, outtype: str = "f16",
                 log: Path) -> Path:
    """``peft_dir`` (a PEFT LoRA) as one GGUF file ``out`` for llama.cpp; the log goes to ``log``."""
    _run(converter, LORA_SCRIPT, [str(peft_dir), "--base", str(base_dir), "--outfile", str(out),
                                  "--outtype", outtype], log)
    return out


def convert_model(converter: Path, hf_dir: Path, out: Path, *, outtype: str = "f16", log: Path,
                  pre_tokenizer: str = "") -> Path:
    """A Hugging Face model folder as one GGUF file (a base model for llama.cpp)."""
    _run(converter, MODEL_SCRIPT, [str(hf_dir), "--outfile", str(out), "--outtype", outtype], log,
         pre_tokenizer=pre_tokenizer)
    return out
