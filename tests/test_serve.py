"""``cra serve``: a real engine on loopback with the registry's adapters, chosen per request.

llama-cpp-python's server runs for real on the tiny model with a LoRA trained by ``cra
train`` and the tiny model's own LoRA; the vLLM and unsloth paths need CUDA and skip with
the reason where there is none. Engine command lines are checked as the engines read them.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from curated import staged_files, staged_tiny_lora, version_meta
from tinymodel import plan_prompt, tiny_model

from appliance.adapters import registry
from appliance.adapters.routes import routes_for
from appliance.config import Home, ServingConfig
from appliance.db.core import Database
from appliance.llm import LLMClient, LLMConfig
from appliance.llm.providers.openai_compat import OpenAICompatProvider
from appliance.serving.engines import ServedAdapter, ServeSet, make_engine
from appliance.serving.server import serve_set

REPO = Path(__file__).resolve().parent.parent
PROMPT = plan_prompt("Fix router in store", ["pkg/router.py", "pkg/token.py", "pkg/store.py"])


def _cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Serving:
    """``cra serve --json`` in a child process; its events read line by line."""

    def __init__(self, home: Home, *args: str):
        env = {**os.environ, "CRA_HOME": str(home.root), "PYTHONPATH": str(REPO)}
        self.proc = subprocess.Popen([sys.executable, "-m", "appliance.cli", "serve", "--json", *args], env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def event(self, timeout: float = 120) -> dict:
        try:
            return json.loads(self.lines.get(timeout=timeout))
        except queue.Empty:
            self.stop()
            pytest.fail(f"cra serve said nothing in {timeout} s: {self.proc.stderr.read() if self.proc.stderr else ''}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)


def _ask(endpoint: str, db: Database, routes=None, base: str = "model") -> str:
    client = LLMClient(OpenAICompatProvider(endpoint, base), config=LLMConfig(max_retries=0), log=db, routes=routes)
    return client.complete(PROMPT, stage="plan", temperature=0, seed=5, max_tokens=80).text


@pytest.fixture
def served_home(trained_plan: Path, tmp_path: Path) -> tuple[Home, Database, int]:
    """The trained home (plan-v1 from cra train) plus the tiny model's own LoRA as plan-v2."""
    pytest.importorskip("llama_cpp", reason="the llama extra (llama-cpp-python) is not installed")
    for module in ("fastapi", "uvicorn", "sse_starlette", "starlette_context", "pydantic_settings"):
        pytest.importorskip(module, reason=f"llama-cpp-python's server needs {module}: pip install 'cra[llama]'")
    model = tiny_model()
    root = tmp_path / "home"
    shutil.copytree(trained_plan, root)
    home = Home(root)
    port = _free_port()
    with (root / "cra.toml").open("a") as fh:
        fh.write(f"\n[serving]\nport = {port}\npoll_s = 0.3\nn_ctx = 1024\n")
    db = Database(home.db_path)
    meta = version_meta(model_base=str(model.hf_dir), base_gguf=str(model.gguf))
    registry.register(db, home, "plan", staged_tiny_lora(tmp_path / "v2", model), meta)
    registry.promote(db, home, "plan", 1, reason="baseline")
    yield home, db, port
    db.close()


def test_cra_serve_answers_per_request_adapters_and_follows_promotes_without_a_restart(served_home) -> None:
    home, db, port = served_home
    server = Serving(home, "--engine", "llama-cpp-python")
    try:
        ready = server.event()
        assert ready["kind"] == "ready" and ready["endpoint"] == f"http://127.0.0.1:{port}/v1"
        assert [(m["name"], m.get("aliases")) for m in ready["models"]] == [
            ("model", None), ("plan-v1", ["active"]), ("plan-v2", ["candidate"])]
        endpoint = ready["endpoint"]
        base = _ask(endpoint, db)
        active = _ask(endpoint, db, routes_for(db, home, "active"))
        candidate = _ask(endpoint, db, routes_for(db, home, "candidate"))
        assert active != base and candidate != base and active != candidate
        assert [r[0] for r in db.query("SELECT adapter FROM llm_calls ORDER BY id")] == ["", "plan@v1", "plan@v2"]

        registry.promote(db, home, "plan", reason="candidate wins", report="eval-1")
        assert server.event()["kind"] == "updated"  # both versions were loaded: no restart
        assert _ask(endpoint, db, routes_for(db, home, "active")) == candidate
        registry.rollback(db, home, "plan", reason="regressed")
        assert server.event()["kind"] == "updated"
        assert _ask(endpoint, db, routes_for(db, home, "active")) == active

        # A version the server lacks: llama-cpp-python restarts with it.
        v1 = registry.find(db, "plan", 1)
        staging = home.root / "stage-v3"
        shutil.copytree(home.root / v1.path, staging)
        (staging / "metadata.json").unlink()
        v3 = registry.register(db, home, "plan", staging, version_meta(
            model_base=v1.base_model, base_gguf=v1.base_gguf))
        restarted = server.event()
        assert restarted["kind"] == "restarted"
        assert ("plan-v3", ["candidate"]) in [(m["name"], m.get("aliases")) for m in restarted["models"]]
        assert _ask(endpoint, db, routes_for(db, home, "candidate")) == active  # the same weights as v1

        # A tampered version is never served: the change is refused, the server keeps going.
        (home.root / v3.path / "adapter.gguf").write_bytes(b"GGUF tampered")
        refused = server.event(timeout=30)
        assert refused["kind"] == "refused" and "plan@v3" in refused["detail"]
    finally:
        code = server.stop()
    assert code == 0
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # the engine went with it: the port is free again
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) != 0:
                break
        time.sleep(0.2)
    else:
        pytest.fail("the engine still listens after cra serve stopped")


def test_serving_refuses_a_tampered_adapter_at_start(served_home) -> None:
    home, db, _ = served_home
    v1 = registry.find(db, "plan", 1)
    (home.root / v1.path / "adapter_config.json").write_text("{}")
    server = Serving(home, "--engine", "llama-cpp-python")
    code = server.proc.wait(timeout=120)
    err = server.proc.stderr.read() if server.proc.stderr else ""
    assert code == 2 and "plan@v1" in err and "does not match the sha256" in err, err


# ------------------------------------------------------------------------------ engine arguments


def _set(tmp_path: Path) -> ServeSet:
    def adapter(n: int, alias: str) -> ServedAdapter:
        return ServedAdapter(slot="plan", version=n, name=f"plan-v{n}", aliases=(alias,), rank=16,
                             peft_dir=str(tmp_path / f"v{n}"), gguf=str(tmp_path / f"v{n}" / "adapter.gguf"),
                             base_model=str(tmp_path / "qwen3-4b"), base_gguf=str(tmp_path / "qwen3-4b.gguf"))
    return ServeSet(base_model=str(tmp_path / "qwen3-4b"), base_gguf=str(tmp_path / "qwen3-4b.gguf"),
                    adapters=(adapter(1, "active"), adapter(2, "candidate")))


def test_vllm_gets_its_lora_modules_rank_and_runtime_loading(tmp_path: Path) -> None:
    launch = make_engine("vllm", ServingConfig()).launch(_set(tmp_path), 8123, ServingConfig(), tmp_path)
    cmd = launch.command
    assert cmd[1:3] == ["-m", "vllm.entrypoints.openai.api_server"]
    assert cmd[cmd.index("--model") + 1] == str(tmp_path / "qwen3-4b")
    assert cmd[cmd.index("--served-model-name") + 1] == "qwen3-4b" and "--enable-lora" in cmd
    assert cmd[cmd.index("--max-lora-rank") + 1] == "64" and cmd[cmd.index("--host") + 1] == "127.0.0.1"
    modules = cmd[cmd.index("--lora-modules") + 1:cmd.index("--lora-modules") + 3]
    assert modules == [f"plan-v1={tmp_path / 'v1'}", f"plan-v2={tmp_path / 'v2'}"]
    assert launch.env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"
    assert launch.env["HF_HUB_OFFLINE"] == "1" and launch.env["VLLM_NO_USAGE_STATS"] == "1"


def test_llama_server_gets_one_lora_per_version_applied_only_on_request(tmp_path: Path) -> None:
    config = ServingConfig(llama_server=sys.executable)  # any binary that exists
    cmd = make_engine("llama-server", config).launch(_set(tmp_path), 8124, config, tmp_path).command
    assert cmd[cmd.index("-m") + 1] == str(tmp_path / "qwen3-4b.gguf") and "--lora-init-without-apply" in cmd
    assert [cmd[i + 1] for i, a in enumerate(cmd) if a == "--lora"] == [
        str(tmp_path / "v1" / "adapter.gguf"), str(tmp_path / "v2" / "adapter.gguf")]
    missing = make_engine("llama-server", ServingConfig(llama_server="no-such-llama-server"))
    with pytest.raises(Exception, match="llama-server binary 'no-such-llama-server' is not on this machine"):
        missing.check()


def test_llama_cpp_python_gets_one_model_alias_per_version(tmp_path: Path) -> None:
    launch = make_engine("llama-cpp-python", ServingConfig()).launch(_set(tmp_path), 8125, ServingConfig(), tmp_path)
    config = json.loads(launch.files[0].read_text())
    assert config["host"] == "127.0.0.1" and config["port"] == 8125
    assert [(m["model_alias"], m.get("lora_path")) for m in config["models"]] == [
        ("qwen3-4b", None), ("plan-v1", str(tmp_path / "v1" / "adapter.gguf")),
        ("plan-v2", str(tmp_path / "v2" / "adapter.gguf"))]


def test_a_server_needs_restarting_only_for_a_version_it_lacks(tmp_path: Path) -> None:
    full = _set(tmp_path)
    only_v2 = ServeSet(full.base_model, full.base_gguf, full.adapters[1:])
    llama, vllm = make_engine("llama-cpp-python", ServingConfig()), make_engine("vllm", ServingConfig())
    assert not llama.restart_for(full, only_v2) and llama.restart_for(only_v2, full)
    assert not vllm.restart_for(only_v2, full)  # vLLM loads it at run time instead


def test_serve_set_takes_active_and_candidate_and_needs_something_to_serve(db: Database, home: Home,
                                                                           tmp_path: Path) -> None:
    from appliance.errors import BadInput

    with pytest.raises(BadInput, match="no adapter version to serve"):
        serve_set(db, home)
    for i in range(2):
        registry.register(db, home, "plan", staged_files(tmp_path / f"s{i}", str(i)),
                          version_meta(model_base="models/b", base_gguf="models/b.gguf"))
    registry.promote(db, home, "plan", 2)
    serve = serve_set(db, home)
    assert [(a.name, a.aliases) for a in serve.adapters] == [("plan-v2", ("active", "candidate"))]
    assert serve.base_gguf == str(home.root / "models/b.gguf") and serve.base_name() == "b"


# ------------------------------------------------------------------------------------ CUDA paths


def test_vllm_without_cuda_or_the_gpu_extra_is_one_clear_line(home: Home, tmp_path: Path) -> None:
    if _cuda() and shutil.which("nvidia-smi"):
        pytest.skip("this machine has CUDA: the vLLM path is tested for real by scripts/gpu-check.sh")
    proc = subprocess.run([sys.executable, "-m", "appliance.cli", "serve", "--engine", "vllm", "--base", str(tmp_path)],
                          env={**os.environ, "CRA_HOME": str(home.root)}, capture_output=True, text=True, timeout=120,
                          check=False)
    err = proc.stderr.strip()
    assert proc.returncode == 1 and len(err.splitlines()) == 1, err
    assert "pip install 'cra[gpu]'" in err or "vLLM needs a CUDA GPU" in err


@pytest.mark.skipif(not _cuda(), reason="vLLM serves LoRAs on CUDA only; this machine has no CUDA GPU "
                    "(scripts/gpu-check.sh runs this path on a GPU box)")
def test_vllm_serves_per_request_adapters_on_cuda() -> None:  # pragma: no cover - CUDA boxes
    pytest.importorskip("vllm", reason="the gpu extra (vllm) is not installed: pip install 'cra[gpu]'")
    proc = subprocess.run(["bash", str(REPO / "scripts" / "gpu-check.sh")], capture_output=True, text=True,
                          timeout=3600, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def test_without_cuda_training_takes_the_peft_path_and_unsloth_is_cuda_only() -> None:
    from appliance.errors import MissingExtra
    from appliance.training.fit import choose_backend

    cuda = {"quantization": "4bit", "backend": "unsloth"}
    assert choose_backend(cuda, has_cuda=False) == "peft"  # 4-bit and unsloth need CUDA: never chosen here
    if not _cuda():
        pytest.skip("unsloth QLoRA needs a CUDA GPU; this machine has none (scripts/gpu-check.sh trains with it)")
    try:  # pragma: no cover - CUDA boxes
        assert choose_backend(cuda, has_cuda=True) == "unsloth"
    except MissingExtra as exc:  # pragma: no cover
        assert "pip install 'cra[gpu]'" in str(exc)


def test_gpu_check_says_in_one_line_what_is_missing_without_cuda() -> None:
    if _cuda() and shutil.which("nvidia-smi"):
        pytest.skip("this machine has CUDA: run scripts/gpu-check.sh itself")
    proc = subprocess.run(["bash", str(REPO / "scripts" / "gpu-check.sh")], capture_output=True, text=True,
                          timeout=300, check=False)
    err = proc.stderr.strip()
    assert proc.returncode == 1 and len(err.splitlines()) == 1 and err.startswith("gpu-check: "), err
    assert "CUDA" in err
