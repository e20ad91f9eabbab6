"""The OpenAI-compatible provider over real HTTP on loopback.

Against llama-cpp-python's own server, started here on the tiny GGUF model with two
model aliases (the base and base + LoRA), so the per-request model name is exercised for
real. Failures come from small servers of our own on loopback: one that accepts and
never answers (a timeout), one that answers 500, one that answers garbage.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from tinymodel import (  # tests/ is on sys.path (conftest.py)
    check_samples,
    named_files,
    plan_prompt,
    tiny_model,
)

from appliance.db.core import Database
from appliance.db.runs import list_calls
from appliance.errors import BadInput, InfraError
from appliance.llm import LLMClient, LLMConfig, LLMError, LLMUnavailable
from appliance.llm.providers.openai_compat import (
    OpenAICompatProvider,
    normalise_base,
    response_format_body,
)
from harness.plans import plan_json_schema

FILES = ["pkg/cache.py", "pkg/parser.py", "pkg/queue.py"]
TASK = "Fix parser in cache"
GOOD_PLAN = json.dumps({"kind": "step", "steps": [
    {"id": 1, "file": "pkg/queue.py", "symbols": ["push"], "action": "modify",
     "description": "fix push", "depends_on": []}]})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _client(endpoint: str, db: Database | None, **config: Any) -> LLMClient:
    cfg = LLMConfig(**{"provider": "openai_compat", "endpoint": endpoint, "model": "tiny",
                       "retry_backoff_s": 0, "timeout_s": 60, **config})
    return LLMClient.from_config(cfg, log=db)


# ------------------------------------------------------------------ servers of our own


def _chat_answer(content: str, model: str = "tiny") -> dict[str, Any]:
    return {"id": "x", "object": "chat.completion", "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19}}


class FakeServer:
    """Loopback HTTP: answers POSTs from a script of (status, body), records what it got."""

    def __init__(self, answers: list[tuple[int, Any]], models: list[str] | None = None,
                 pages: dict[str, Any] | None = None):
        self.answers = list(answers)
        self.models = models
        self.pages = pages or {}  # more GET paths and their JSON (llama-server's /lora-adapters)
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: Any) -> None:
                raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self) -> None:
                if self.path in fake.pages:
                    self._send(200, fake.pages[self.path])
                elif fake.models is None or self.path != "/v1/models":
                    self._send(404, {"detail": "Not Found"})
                else:
                    self._send(200, {"object": "list", "data": [{"id": m} for m in fake.models]})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                fake.bodies.append(json.loads(self.rfile.read(length)))
                fake.headers.append(dict(self.headers))
                status, body = fake.answers.pop(0) if fake.answers else (500, {"error": "script over"})
                self._send(status, body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def fake():
    servers: list[FakeServer] = []

    def start(answers: list[tuple[int, Any]], models: list[str] | None = None) -> FakeServer:
        servers.append(FakeServer(answers, models))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


@pytest.fixture
def silent_server():
    """Accepts connections and never says a word: the server that hangs."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        sock.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
                held.append(conn)
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    sock.close()


# ---------------------------------------------------------- llama-cpp-python's server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    for module in ("fastapi", "uvicorn", "sse_starlette", "starlette_context", "pydantic_settings"):
        pytest.importorskip(module, reason=f"llama-cpp-python's server needs {module}: "
                                           "pip install 'cra[llama]'")
    model = tiny_model()
    port = _free_port()
    models = [{"model": str(model.gguf), "model_alias": "tiny", "n_ctx": 1024, "verbose": False}]
    if model.lora_gguf is not None:
        models.append({"model": str(model.gguf), "model_alias": "tiny-lora", "n_ctx": 1024,
                       "lora_path": str(model.lora_gguf), "verbose": False})
    folder = tmp_path_factory.mktemp("llama-server")
    config = folder / "config.json"
    config.write_text(json.dumps({"host": "127.0.0.1", "port": port, "models": models}))
    log = (folder / "server.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--config_file", str(config)],
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + 60
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"llama_cpp.server exited: {(folder / 'server.log').read_text()[-2000:]}")
            try:
                opener.open(url + "/models", timeout=1).read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"llama_cpp.server did not start: {(folder / 'server.log').read_text()[-2000:]}")
                time.sleep(0.2)
        yield {"url": url, "model": model, "has_lora": model.lora_gguf is not None}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_plans_over_http_are_schema_valid_through_the_format_fallback(server, db: Database) -> None:
    client = _client(server["url"], db)
    out = client.complete(plan_prompt(TASK, FILES), stage="plan", json_schema=plan_json_schema(FILES),
                          temperature=0.2, seed=11, max_tokens=256)
    assert out.ok, out.errors
    assert named_files(out.text) <= set(FILES)
    # The server refused OpenAI's json_schema format; the provider switched for good.
    assert client.provider.mode == "json_object_schema"
    (row,) = list_calls(db)
    assert (row.status, row.provider, row.model, row.try_no) == ("ok", "openai_compat", "tiny", 1)
    assert row.prompt_tokens == out.prompt_tokens > 20 and row.completion_tokens > 10


def test_the_adapter_is_chosen_per_request_by_model_name(server, db: Database) -> None:
    if not server["has_lora"]:
        pytest.skip("peft is not installed: the tiny model has no LoRA (pip install 'cra[train]')")
    client = _client(server["url"], db)
    prompt = plan_prompt("Add token in router", ["pkg/router.py", "pkg/token.py", "pkg/store.py"])
    base = client.complete(prompt, stage="plan", temperature=0, seed=1, max_tokens=80)
    tuned = client.complete(prompt, stage="plan", temperature=0, seed=1, max_tokens=80, adapter="tiny-lora")
    again = client.complete(prompt, stage="plan", temperature=0, seed=1, max_tokens=80)
    assert base.text == again.text and tuned.text != base.text
    assert [(r.model, r.adapter) for r in list_calls(db)] == [("tiny", ""), ("tiny", "tiny-lora"), ("tiny", "")]


def test_an_unknown_model_name_is_bad_input_listing_the_served_ones(server, db: Database) -> None:
    client = _client(server["url"], db)
    with pytest.raises(BadInput, match="does not serve a model named 'scope-v9'") as info:
        client.complete(plan_prompt(TASK, FILES), stage="plan", adapter="scope-v9")
    assert "it serves: tiny" in str(info.value)


def test_n_samples_from_a_server_that_returns_one_choice(server, db: Database) -> None:
    client = _client(server["url"], db)
    out = client.complete(plan_prompt(TASK, FILES), stage="plan", json_schema=plan_json_schema(FILES),
                          temperature=0.9, n=2, seed=5, max_tokens=256)
    check_samples(out, FILES, 2)
    (row,) = list_calls(db)
    assert row.n == 2 and len(row.responses) == 2


# ------------------------------------------------------------------------- failures


def test_a_server_that_never_answers_is_a_recorded_timeout(silent_server, db: Database) -> None:
    client = _client(silent_server, db, timeout_s=0.3, max_retries=1)
    started = time.monotonic()
    with pytest.raises(LLMError) as info:
        client.bound(attempt=2).complete(plan_prompt(TASK, FILES), stage="plan")
    assert info.value.status == "timeout" and info.value.tries == 2
    assert time.monotonic() - started < 10
    rows = list_calls(db)
    assert [(r.status, r.try_no, r.attempt) for r in rows] == [("timeout", 1, 2), ("timeout", 2, 2)]
    assert all(r.latency_s >= 0.25 for r in rows) and "within 0.3 s" in rows[0].error


def test_a_500_is_recorded_and_retried_until_it_passes(fake, db: Database) -> None:
    server = fake([(500, {"error": "CUDA out of memory"}), (503, "overloaded"),
                   (200, _chat_answer(GOOD_PLAN))], models=["tiny"])
    out = _client(server.url, db, max_retries=2).complete(
        plan_prompt(TASK, FILES), stage="plan", json_schema=plan_json_schema(FILES))
    assert out.ok and out.prompt_tokens == 12 and out.completion_tokens == 7
    rows = list_calls(db)
    assert [r.status for r in rows] == ["server_error", "server_error", "ok"]
    assert "HTTP 500" in rows[0].error and "CUDA out of memory" in rows[0].error


def test_500s_past_the_retry_budget_are_a_typed_failure(fake, db: Database) -> None:
    server = fake([(500, {"error": "boom"})] * 5, models=["tiny"])
    with pytest.raises(LLMUnavailable, match="server_error") as info:
        _client(server.url, db, max_retries=1).complete(plan_prompt(TASK, FILES), stage="execute")
    assert info.value.tries == 2 and len(server.bodies) == 2
    assert [r.status for r in list_calls(db)] == ["server_error"] * 2
    assert isinstance(info.value, InfraError)  # the server's failure, not the model's


def test_a_400_is_the_requests_failure_not_the_servers(fake, db: Database) -> None:
    server = fake([(400, {"error": "prompt is longer than the context"})], models=["tiny"])
    with pytest.raises(LLMError, match="bad_request") as info:
        _client(server.url, db, max_retries=3).complete(plan_prompt(TASK, FILES), stage="plan")
    assert not isinstance(info.value, InfraError) and len(server.bodies) == 1


def test_preflight_names_an_unreachable_server_before_any_request(db: Database) -> None:
    url = f"http://127.0.0.1:{_free_port()}/v1"
    client = _client(url, db)
    with pytest.raises(InfraError, match="127.0.0.1") as info:
        client.preflight()
    assert info.value.exit_code == 1 and url in str(info.value) and "nothing was run" in str(info.value)
    assert list_calls(db) == []  # a ping is not a model call


def test_preflight_accepts_a_live_server_with_or_without_a_model_listing(fake, silent_server) -> None:
    _client(fake([], models=["tiny"]).url, None).preflight()
    _client(fake([], models=None).url, None).preflight()  # 404 on /models: alive all the same
    with pytest.raises(InfraError, match="not available"):
        _client(silent_server, None, timeout_s=0.3).preflight()


def test_garbage_under_a_schema_is_recorded_bad_output_not_a_crash(fake, db: Database) -> None:
    server = fake([(200, _chat_answer("Sure!! here is ur plan: edit pkg/queue.py"))], models=["tiny"])
    out = _client(server.url, db).complete(plan_prompt(TASK, FILES), stage="plan",
                                           json_schema=plan_json_schema(FILES))
    assert out.status == "bad_output" and out.errors[0].startswith("not JSON")
    (row,) = list_calls(db)
    assert row.status == "bad_output" and row.responses == [out.text] and len(server.bodies) == 1
    sent = server.bodies[0]["response_format"]
    assert sent["type"] == "json_schema" and sent["json_schema"]["schema"] == plan_json_schema(FILES)


def test_a_body_that_is_not_json_is_a_server_error(fake, db: Database) -> None:
    server = fake([(200, "<html>proxy login</html>")], models=["tiny"])
    with pytest.raises(LLMError, match="not JSON"):
        _client(server.url, db, max_retries=0).complete(plan_prompt(TASK, FILES), stage="plan")
    assert [r.status for r in list_calls(db)] == ["server_error"]


def test_a_refused_connection_is_recorded_and_retried(db: Database) -> None:
    url = f"http://127.0.0.1:{_free_port()}/v1"
    with pytest.raises(LLMUnavailable) as info:
        _client(url, db, max_retries=2).complete(plan_prompt(TASK, FILES), stage="plan")
    assert info.value.status == "connection_error" and info.value.tries == 3
    assert [r.status for r in list_calls(db)] == ["connection_error"] * 3


def test_auto_falls_back_to_the_json_object_schema_format_once(fake, db: Database) -> None:
    server = fake([(422, {"detail": "response_format.type: Input should be 'text' or 'json_object'"}),
                   (200, _chat_answer(GOOD_PLAN)), (200, _chat_answer(GOOD_PLAN))], models=None)
    client = _client(server.url, db)
    schema = plan_json_schema(FILES)
    assert client.complete(plan_prompt(TASK, FILES), stage="plan", json_schema=schema).ok
    assert client.complete(plan_prompt(TASK, FILES), stage="plan", json_schema=schema).ok
    kinds = [b["response_format"]["type"] for b in server.bodies]
    assert kinds == ["json_schema", "json_object", "json_object"]  # refused once, then remembered
    assert server.bodies[1]["response_format"]["schema"] == schema
    assert [r.status for r in list_calls(db)] == ["ok", "ok"]  # a format switch is not a failed try


@pytest.mark.parametrize("mode, field, check", [
    ("json_schema", "response_format", lambda v, s: v["json_schema"]["schema"] == s),
    ("json_object_schema", "response_format", lambda v, s: v == {"type": "json_object", "schema": s}),
    ("guided_json", "guided_json", lambda v, s: v == s),
    ("structured_outputs", "structured_outputs", lambda v, s: v == {"json": s}),
])
def test_each_structured_output_mode_sends_one_kind_of_constraint(fake, mode, field, check) -> None:
    server = fake([(200, _chat_answer(GOOD_PLAN))], models=["tiny"])
    schema = plan_json_schema(FILES)
    _client(server.url, None, structured_output=mode).complete(
        plan_prompt(TASK, FILES), stage="plan", json_schema=schema, n=1, seed=9, temperature=0.5)
    body = server.bodies[0]
    assert check(body[field], schema)
    kinds = {"response_format", "guided_json", "structured_outputs"} & set(body)
    assert kinds == {field}  # vLLM refuses a request carrying two kinds
    assert (body["model"], body["seed"], body["temperature"], body["n"]) == ("tiny", 9, 0.5, 1)


def test_free_text_requests_carry_no_constraint(fake) -> None:
    server = fake([(200, _chat_answer("hello"))], models=["tiny"])
    _client(server.url, None).complete([{"role": "user", "content": "hi"}], stage="scope")
    assert not {"response_format", "guided_json", "structured_outputs"} & set(server.bodies[0])
    assert response_format_body({"title": "plan"}, "json_schema")["response_format"]["json_schema"]["name"] == "plan"


def test_proxies_in_the_environment_are_never_used(fake, db: Database, monkeypatch) -> None:
    dead = f"http://127.0.0.1:{_free_port()}"
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "all_proxy"):
        monkeypatch.setenv(var, dead)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    server = fake([(200, _chat_answer("hi"))], models=["tiny"])
    assert _client(server.url, db).complete([{"role": "user", "content": "hi"}], stage="scope").ok


def test_the_api_key_comes_from_the_named_variable_and_is_never_logged(fake, db: Database, monkeypatch) -> None:
    server = fake([(200, _chat_answer("hi"))], models=["tiny"])
    monkeypatch.setenv("CRA_TEST_LLM_KEY", "sk-local-123")
    client = _client(server.url, db, api_key_env="CRA_TEST_LLM_KEY")
    client.complete([{"role": "user", "content": "hi"}], stage="scope")
    assert server.headers[0]["Authorization"] == "Bearer sk-local-123"
    dump = json.dumps([tuple(r) for r in db.query("SELECT * FROM llm_calls")])
    assert "sk-local-123" not in dump
    monkeypatch.delenv("CRA_TEST_LLM_KEY")
    with pytest.raises(BadInput, match=r"\$CRA_TEST_LLM_KEY"):
        _client(server.url, db, api_key_env="CRA_TEST_LLM_KEY")


def test_a_base_url_without_a_path_means_v1() -> None:
    assert normalise_base("http://127.0.0.1:8000") == "http://127.0.0.1:8000/v1"
    assert normalise_base("http://10.1.2.3:8000/v1/") == "http://10.1.2.3:8000/v1"
    with pytest.raises(BadInput):
        OpenAICompatProvider("ftp://host/v1", "m")
    with pytest.raises(BadInput, match="name of a served model"):
        OpenAICompatProvider("http://127.0.0.1:1/v1", "")
