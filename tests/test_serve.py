"""graft serve: the HTTP API under good, bad and concurrent requests, and a property-based run
against its own OpenAPI spec."""

from __future__ import annotations

import asyncio
import io

import pytest
from PIL import Image

from tests._deploy_runs import image_run, text_run

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from graftkit.deploy.serve import ServeLimits, create_app  # noqa: E402


def _png(size=(48, 40), color=(200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


def _jpeg(size=(64, 48)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (10, 120, 200)).save(buf, "JPEG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def image_app(tmp_path_factory):
    limits = ServeLimits(max_body_bytes=2_000_000, max_pixels=1_000_000, max_files=4)
    return create_app(image_run(tmp_path_factory), limits=limits, max_wait_ms=20)


@pytest.fixture(scope="module")
def client(image_app):
    with TestClient(image_app) as c:  # runs the lifespan, like uvicorn
        yield c


@pytest.fixture(scope="module")
def text_app(tmp_path_factory, tiny_bert_dir):
    return create_app(text_run(tmp_path_factory, tiny_bert_dir), limits=ServeLimits(max_text_chars=200, max_texts=3))


@pytest.fixture(scope="module")
def text_client(text_app):
    with TestClient(text_app) as c:
        yield c


def test_health_info_and_openapi(client):
    assert client.get("/health").json()["status"] == "ok"
    info = client.get("/info").json()
    assert info["classes"] == ["cat", "dog", "fox"] and info["task"] == "classification" and info["modality"] == "image"
    assert "accuracy" in info["metrics"]["val"] and info["input"]["kind"] == "image" and info["limits"]["max_files"] == 4
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in body and {"413", "415", "422"} <= set(spec["paths"]["/predict"]["post"]["responses"])


def test_predict_one_several_and_raw(client):
    r = client.post("/predict?top_k=2", files=[("file", ("a.png", _png(), "image/png")), ("file", ("b.jpg", _jpeg(), "image/jpeg"))])
    assert r.status_code == 200, r.text
    preds = r.json()["predictions"]
    assert [p["input"] for p in preds] == ["a.png", "b.jpg"] and len(preds[0]["top_k"]) == 2
    assert preds[0]["label"] in ("cat", "dog", "fox") and 0 < preds[0]["score"] <= 1
    raw = client.post("/predict", content=_png(), headers={"content-type": "image/png"})
    assert raw.status_code == 200 and len(raw.json()["predictions"][0]["top_k"]) == 3


def _huge_png() -> bytes:
    buf = io.BytesIO()
    Image.new("L", (1200, 1000)).save(buf, "PNG")  # 1.2 MP, over the 1 MP limit, a small file
    return buf.getvalue()


BAD_IMAGE_REQUESTS = {
    "json to an image model": (dict(json={"text": "hello"}), 415, "image model"),
    "no content type": (dict(content=b"abc"), 415, "no content type"),
    "truncated png": (dict(files={"file": ("t.png", _png()[:60], "image/png")}), 422, "t.png"),
    "truncated jpeg": (dict(files={"file": ("t.jpg", _jpeg((200, 150))[:-100], "image/jpeg")}), 422, "truncated"),
    "not an image": (dict(files={"file": ("x.png", b"hello world", "image/png")}), 422, "not an image"),
    "empty file": (dict(files={"file": ("e.png", b"", "image/png")}), 422, "empty"),
    "huge image": (dict(files={"file": ("big.png", _huge_png(), "image/png")}), 413, "1200x1000"),
    "extreme aspect": (dict(files={"file": ("thin.png", _png(size=(500, 2)), "image/png")}), 422, "500x2"),
    "form without a file": (dict(data={"name": "x"}, files={"other": ("", b"", "text/plain")}), 422, "no image"),
    "malformed multipart": (dict(content=b"--zz\r\nnonsense", headers={"content-type": "multipart/form-data; boundary=zz"}), 422, "no image"),
    "too many files": (dict(files=[("file", (f"{i}.png", _png(), "image/png")) for i in range(5)]), 413, "limit"),
    "body too large": (dict(content=b"\0" * 2_100_000, headers={"content-type": "image/png"}), 413, "bytes"),
    "bad top_k": (dict(params={"top_k": "many"}, files={"file": ("a.png", _png(), "image/png")}), 422, "top_k"),
}


@pytest.mark.parametrize("name", list(BAD_IMAGE_REQUESTS))
def test_bad_image_requests_get_4xx_json_and_service_keeps_serving(client, name):
    kwargs, status, words = BAD_IMAGE_REQUESTS[name]
    r = client.post("/predict", **kwargs)
    assert r.status_code == status, r.text
    assert words in r.json()["error"]
    good = client.post("/predict", files={"file": ("ok.png", _png(), "image/png")})
    assert good.status_code == 200


def test_unknown_routes_and_methods_are_json_errors(client):
    assert client.get("/nope").json() == {"error": "Not Found"}
    r = client.get("/predict")
    assert r.status_code == 405 and "error" in r.json()


def test_concurrent_requests_are_micro_batched(image_app):
    import httpx

    async def go():
        transport = httpx.ASGITransport(app=image_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            return await asyncio.gather(*[c.post("/predict", files={"file": (f"{i}.png", _png(color=(i * 20, 0, 0)), "image/png")}) for i in range(8)])

    batcher = image_app.state.batcher
    before_batches, before_items = batcher.batches, batcher.items
    responses = asyncio.run(go())
    assert all(r.status_code == 200 for r in responses)
    assert batcher.items - before_items == 8 and batcher.batches - before_batches < 8  # some ran together


def test_text_service_good_and_bad_requests(text_client):
    info = text_client.get("/info").json()
    assert info["modality"] == "text" and info["classes"] == ["negative", "positive"]
    ok = text_client.post("/predict", json={"texts": ["the movie was good", "the film was awful"]})
    assert ok.status_code == 200 and [p["input"] for p in ok.json()["predictions"]] == ["the movie was good", "the film was awful"]
    bad = [
        (dict(json={"text": ""}), 422, "empty"),
        (dict(json={"text": "   "}), 422, "empty"),
        (dict(content=b'{"text": "unclosed', headers={"content-type": "application/json"}), 400, "not valid JSON"),
        (dict(json={"texts": "not a list"}), 422, "non-empty list"),
        (dict(json={"texts": ["ok", 3]}), 422, "must be a string"),
        (dict(json={"words": "x"}), 422, '"text"'),
        (dict(json=["a list"]), 422, "object"),
        (dict(json={"text": "x" * 201}), 413, "201 characters"),
        (dict(json={"texts": ["a", "b", "c", "d"]}), 413, "limit is 3"),
        (dict(files={"file": ("a.png", _png(), "image/png")}), 415, "text model"),
    ]
    for kwargs, status, words in bad:
        r = text_client.post("/predict", **kwargs)
        assert r.status_code == status and words in r.json()["error"], (kwargs, r.text)
    assert text_client.post("/predict", json={"text": "a lovely film"}).status_code == 200


@pytest.mark.parametrize("kind", ["image", "text"])
def test_property_based_run_against_the_openapi_spec_finds_no_5xx(request, kind):
    """Schemathesis generates requests from the app's own OpenAPI spec (valid and invalid bodies,
    query values); none may get a 5xx."""
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, given, settings

    app = request.getfixturevalue(f"{kind}_app")
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    seen: dict[int, int] = {}
    operations = [r.ok() for r in schema.get_all_operations()]
    runs = [(op, m) for op in operations for m in schemathesis.GenerationMode if op.path == "/predict" or m.value == "positive"]
    for operation, mode in runs:  # (GET routes without parameters have no invalid requests to generate)

        @given(case=operation.as_strategy(generation_mode=mode))  # valid requests, then schema-violating ones
        @settings(max_examples=15 if operation.path == "/predict" else 3, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))  # fmt: skip
        def check(case):
            r = case.call()
            seen[r.status_code] = seen.get(r.status_code, 0) + 1
            assert r.status_code < 500, f"{case.method} {case.path}: {r.status_code} {r.text[:300]}"
            assert "application/json" in str(r.headers.get("content-type"))  # errors too: JSON, never a trace

        check()
    assert any(400 <= s < 500 for s in seen), seen  # it did try bad inputs


def test_serve_command_builds_the_app_and_runs_uvicorn(tmp_path_factory, monkeypatch):
    import uvicorn

    from graftkit.cli import main

    called = {}

    def run(server, sockets):
        called.update(app=server.config.app, address=sockets[0].getsockname())

    monkeypatch.setattr(uvicorn.Server, "run", run)
    assert main(["serve", str(image_run(tmp_path_factory)), "--port", "8123", "--backend", "torch"]) == 0
    assert called["address"] == ("127.0.0.1", 8123) and called["app"].title.startswith("graftkit")  # bound before serving
