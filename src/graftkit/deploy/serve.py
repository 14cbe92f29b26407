"""`graft serve`: a run directory behind a small HTTP API, with a web page.

(No `from __future__ import annotations` here: FastAPI reads the route functions' annotations at
run time, and they name locally imported classes.)

| route               | what                                                                          |
|---------------------|-------------------------------------------------------------------------------|
| `GET /`             | the web page: drop or pick an image (or type a text), see the top classes      |
| `POST /predict`     | image runs: multipart upload (one or more files) or a raw `image/*` or        |
|                     | `application/dicom` body, decoded as `graft predict` decodes files (the run's  |
|                     | channels and `--window`; DICOM and 16-bit PNG/TIFF at full depth);             |
|                     | text runs: JSON `{"text": "..."}` or `{"texts": ["...", ...]}`; `?top_k=5`     |
| `GET /info`         | the model card: task, classes, metrics, input spec, limits                    |
| `GET /health`       | `{"status": "ok"}` once the model is loaded                                   |
| `GET /openapi.json` | the OpenAPI spec (`/docs` renders it)                                         |

Concurrent requests are micro-batched (`MicroBatcher`). Every bad request gets a 4xx answer
`{"error": "..."}` that names the problem (wrong content type, malformed JSON, an unreadable or
truncated image, too many pixels, an empty or too long text, a body over the size limit); the
service keeps serving. FastAPI and uvicorn are imported when an app is built.
"""


import contextlib
import errno
import io
import json
import logging
import warnings
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any, AsyncIterator

from graftkit.errors import ConfigError
from graftkit.rundir import read_run_json

log = logging.getLogger("graftkit.serve")
WEB_FILES = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"}
_MAX_ASPECT = 100
IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp", "image/gif", "image/bmp", "image/tiff", "application/dicom")
AUDIO_TYPES = ("audio/wav", "audio/x-wav", "audio/wave", "audio/flac", "audio/x-flac", "audio/ogg", "audio/mpeg", "audio/mp3")


@dataclass(frozen=True)
class ServeLimits:
    """What one request may send; anything beyond is refused with a 413 naming the limit."""

    max_body_bytes: int = 20 * 2**20
    """Request body size (all files together), bytes."""
    max_files: int = 16
    """Images per request."""
    max_pixels: int = 40_000_000
    """Pixels per image (width x height); checked from the header before decoding."""
    max_texts: int = 64
    """Texts per request."""
    max_text_chars: int = 20_000
    """Characters per text (the model reads at most its max_length tokens of it anyway)."""
    max_audio_seconds: float = 60.0
    """Seconds per audio clip (measured from the file's header before decoding); the model reads
    at most its clip length of it."""
    max_queued_inputs: int = 256
    """Inputs waiting for or in the model, all requests together. A request that would go beyond
    is refused at once with a 503 and `Retry-After` (a client retries later) instead of queueing
    without bound, which would only make every client time out."""


class ApiError(Exception):
    """A bad request: answered with `status` and `{"error": message}`."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


RETRY_AFTER_S = 1
"""What a refused (503) client is told to wait, in seconds."""


def create_app(
    run_dir: str | Path,
    *,
    backend: str = "torch",
    max_batch: int = 16,
    max_wait_ms: float = 5.0,
    limits: ServeLimits | None = None,
    predictor: Any = None,
    precision: str = "auto",
    channels_last: bool | None = None,
) -> Any:
    """Build the FastAPI app serving a run.

    Args:
        run_dir: A finished run directory.
        backend: `torch`, `onnx` or `onnx-int8` (see `graftkit.load`).
        precision: `torch` backend: `auto`, `fp32` or `bf16` (see `graftkit.load`).
        channels_last: `torch` backend: CNN memory format (None: the run's, else per model).
        max_batch: Most inputs the model runs at once (across concurrent requests).
        max_wait_ms: How long a batch waits for more requests.
        limits: Request limits (defaults: `ServeLimits()`).
        predictor: An already loaded `Predictor` for `run_dir` (tests, benchmarks).

    Returns:
        A `fastapi.FastAPI` app; run it with uvicorn or test it with `fastapi.testclient.TestClient`.

    Raises:
        RunDirError, ConfigError: as `graftkit.load`.

    Example:
        >>> from fastapi.testclient import TestClient
        >>> client = TestClient(create_app("runs/flowers"))
        >>> client.post("/predict", files={"file": open("rose.jpg", "rb")}).json()["predictions"][0]["label"]
        'rose'
    """
    from fastapi import FastAPI, Query, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse, Response
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from graftkit.deploy.batching import MicroBatcher
    from graftkit.deploy.predictor import load

    limits = limits or ServeLimits()
    predictor = predictor or load(run_dir, backend=backend, precision=precision, channels_last=channels_last)
    run_dir = Path(run_dir)
    text = predictor.modality == "text"
    audio = predictor.modality == "audio"
    n_out = max(len(predictor.classes), 1)
    batcher = MicroBatcher(lambda xs: predictor.predict(xs, top_k=n_out, batch_size=max_batch), max_batch=max_batch, max_wait_ms=max_wait_ms)
    card = model_card(run_dir, predictor, backend, limits)

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        yield
        batcher.close()

    app = FastAPI(
        lifespan=lifespan,
        title=f"graftkit: {run_dir.name}",
        version=str(card.get("graftkit_version", "")),
        description=f"{card['task']} on {card['modality']} inputs with {card['model']['id']}. POST /predict; GET /info for the model card.",
    )
    app.state.batcher = batcher
    app.state.predictor = predictor
    app.state.in_flight = 0

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"error": exc.message}, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = [f"{'.'.join(str(x) for x in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()]
        return JSONResponse({"error": "; ".join(parts) or "invalid request"}, status_code=422)

    @app.exception_handler(Exception)
    async def _internal_error(request: Request, exc: Exception) -> JSONResponse:  # a bug, not a bad request
        log.exception("internal error on %s", request.url.path)
        return JSONResponse({"error": f"internal error ({type(exc).__name__}); the service keeps running"}, status_code=500)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index():  # noqa: ANN202 (locally imported types confuse FastAPI's annotation resolution)
        return HTMLResponse(_web_file("index.html"))

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: str):  # noqa: ANN202
        if name not in WEB_FILES:
            raise ApiError(404, f"no such file: {name}")
        return Response(_web_file(name), media_type=WEB_FILES[name])

    @app.get("/health", summary="Liveness: the model is loaded")
    async def health() -> dict:
        return {"status": "ok", "backend": backend, "queued": batcher.queued, "in_flight": app.state.in_flight, "batches": batcher.batches, "items": batcher.items}

    @app.get("/info", summary="The model card: task, classes, metrics, input spec, limits")
    async def info() -> dict:
        return card

    responses = {
        400: {"description": "Malformed body (JSON, multipart)", "content": {"application/json": {"schema": _ERROR_SCHEMA}}},
        413: {"description": "Over a limit (body size, pixels, files, texts, text length)", "content": {"application/json": {"schema": _ERROR_SCHEMA}}},
        415: {"description": "Wrong content type", "content": {"application/json": {"schema": _ERROR_SCHEMA}}},
        422: {"description": "Unusable input (unreadable image, empty text, bad parameter)", "content": {"application/json": {"schema": _ERROR_SCHEMA}}},
    }

    @app.post(
        "/predict",
        summary="Top-k predictions for " + ("one or more texts" if text else "one or more images"),
        responses={200: {"content": {"application/json": {"schema": _PREDICT_SCHEMA}}}, **responses},
        openapi_extra={"requestBody": _request_body(text, limits)},
    )
    async def predict(request: Request, top_k: int = Query(5, ge=1, le=1000, description="classes per input")):  # noqa: ANN202
        body = await _read_body(request, limits.max_body_bytes)
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if text:
            names, inputs = _texts_from(body, ctype, limits)
        elif audio:
            names, inputs = await _audio_from(request, body, ctype, limits, predictor.preprocess.sample_rate)
        else:
            names, inputs = await _images_from(request, body, ctype, limits, predictor.preprocess)
        admitted = len(inputs)
        if app.state.in_flight + admitted > limits.max_queued_inputs:
            raise ApiError(503, f"the service is busy ({app.state.in_flight} inputs queued, at most {limits.max_queued_inputs}): "
                                f"retry in {RETRY_AFTER_S} s", headers={"Retry-After": str(RETRY_AFTER_S)})  # fmt: skip
        app.state.in_flight += admitted  # one event loop: no lock needed between the check and the add
        try:
            preds = await batcher.submit(inputs)
        finally:
            app.state.in_flight -= admitted
        k = min(top_k, n_out)
        out = []
        for name, p in zip(names, preds):
            d = p.to_dict()
            d["input"], d["top_k"] = name, d["top_k"][:k]
            out.append(d)
        return JSONResponse({"predictions": out})

    return app


# ----------------------------------------------------------------------------------------------
# Request parsing


async def _read_body(request: Any, limit: int) -> bytes:
    """The body, refused with 413 as soon as it passes `limit` bytes (also when chunked)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise ApiError(413, f"request body is {int(declared)} bytes; the limit is {limit} bytes")
        except ValueError:
            raise ApiError(400, f"Content-Length {declared!r} is not a number") from None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"request body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _texts_from(body: bytes, ctype: str, limits: ServeLimits) -> tuple[list[str], list[str]]:
    if ctype != "application/json":
        raise ApiError(415, f"this is a text model: send JSON (Content-Type: application/json) like {{\"text\": \"...\"}} or {{\"texts\": [...]}}, not {ctype or 'no content type'}")
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ApiError(400, f"body is not valid JSON ({e})") from None
    if not isinstance(data, dict) or not ({"text", "texts"} & set(data)):
        raise ApiError(422, 'JSON body must be an object with "text" (a string) or "texts" (a list of strings)')
    if "text" in data and "texts" in data:
        raise ApiError(422, 'send either "text" or "texts", not both')
    texts = [data["text"]] if "text" in data else data["texts"]
    if not isinstance(texts, list) or not texts:
        raise ApiError(422, '"texts" must be a non-empty list of strings')
    if len(texts) > limits.max_texts:
        raise ApiError(413, f"{len(texts)} texts in one request; the limit is {limits.max_texts}")
    for i, t in enumerate(texts):
        where = '"text"' if "text" in data else f'"texts"[{i}]'
        if not isinstance(t, str):
            raise ApiError(422, f"{where} must be a string, got {type(t).__name__}")
        if not t.strip():
            raise ApiError(422, f"{where} is empty: send some text")
        if len(t) > limits.max_text_chars:
            raise ApiError(413, f"{where} has {len(t)} characters; the limit is {limits.max_text_chars}")
    return texts, texts


async def _images_from(request: Any, body: bytes, ctype: str, limits: ServeLimits, preprocess: Any) -> tuple[list[str], list[Any]]:
    from starlette.concurrency import run_in_threadpool

    files = await _uploads(request, body, ctype, limits, IMAGE_TYPES, "image")
    channels, window = int(getattr(preprocess, "in_chans", 3)), getattr(preprocess, "window", None)  # the run's, as `graft predict` reads files
    images = await run_in_threadpool(lambda: [decode_upload(data, name, limits.max_pixels, channels=channels, window=window) for name, data in files])
    return [name for name, _ in files], images


async def _audio_from(request: Any, body: bytes, ctype: str, limits: ServeLimits, sample_rate: int) -> tuple[list[str], list[Any]]:
    from starlette.concurrency import run_in_threadpool

    files = await _uploads(request, body, ctype, limits, AUDIO_TYPES, "audio")
    waves = await run_in_threadpool(lambda: [decode_audio_upload(data, name, sample_rate, limits.max_audio_seconds) for name, data in files])
    return [name for name, _ in files], waves


def decode_audio_upload(data: bytes, name: str, sample_rate: int, max_seconds: float) -> Any:
    """Decode an uploaded audio file into a mono float32 waveform at `sample_rate`, as `graft predict` reads files.

    Raises:
        ApiError: 422 for empty, unreadable or silent-free (no samples) data; 413 for clips over `max_seconds`.
    """
    import soundfile as sf

    from graftkit.data.audio import decode_audio_bytes

    if not data:
        raise ApiError(422, f"{name}: the file is empty")
    try:
        info = sf.info(io.BytesIO(data))
    except Exception as e:  # libsndfile names the problem
        raise ApiError(422, f"{name}: not a readable audio file ({str(e).splitlines()[0][:160] if str(e) else type(e).__name__}); send wav, flac, ogg or mp3") from None
    seconds = info.frames / float(info.samplerate) if info.samplerate else 0.0
    if seconds > max_seconds:
        raise ApiError(413, f"{name}: the clip is {seconds:.1f} s long; the limit is {max_seconds:g} s")
    try:
        wave = decode_audio_bytes(data, sample_rate)
    except Exception as e:
        raise ApiError(422, f"{name}: not a readable audio file ({str(e).splitlines()[0][:160] if str(e) else type(e).__name__})") from None
    if wave.size == 0:
        raise ApiError(422, f"{name}: the clip holds no audio samples")
    return wave


async def _uploads(request: Any, body: bytes, ctype: str, limits: ServeLimits, raw_types: tuple[str, ...], noun: str) -> list[tuple[str, bytes]]:
    """`(name, bytes)` of each uploaded file: a raw body of one of `raw_types`, or multipart files."""
    from starlette.datastructures import UploadFile
    from starlette.requests import Request

    if ctype in raw_types:  # a raw body (curl --data-binary @x.jpg -H 'Content-Type: image/jpeg')
        files = [("body", body)]
    elif ctype == "multipart/form-data":
        async def replay() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        try:
            form = await Request(request.scope, replay).form(max_files=limits.max_files, max_fields=100)
        except Exception as e:  # starlette raises HTTPException (or MultiPartException) for malformed or oversized forms
            detail = str(getattr(e, "detail", None) or e)
            if "Too many files" in detail:
                raise ApiError(413, f"more than {limits.max_files} {noun} files in one request; the limit is {limits.max_files}") from None
            raise ApiError(400, f"cannot parse the multipart body: {detail}") from None
        uploads = [v for _, v in form.multi_items() if isinstance(v, UploadFile)]
        if not uploads:
            raise ApiError(422, f"no {noun} in the form: send one or more files in a field named 'file'")
        files = [(u.filename or f"file {i}", await u.read()) for i, u in enumerate(uploads)]
    else:
        raise ApiError(415, f"this is an {noun} model: send multipart/form-data with one or more {noun} files (field 'file'), or a raw {noun}/* body, not {ctype or 'no content type'}")
    if len(files) > limits.max_files:
        raise ApiError(413, f"{len(files)} {noun} files in one request; the limit is {limits.max_files}")
    return files


def decode_upload(data: bytes, name: str, max_pixels: int, *, channels: int = 3, window: tuple[float, float] | None = None) -> Any:
    """Decode an uploaded image (or DICOM file) into a `[channels, H, W]` tensor, exactly as
    `graft predict` reads files: `graftkit.data.images.decode_image_bytes` with the run's channels
    and grey window (uint8 for 8-bit images; float32 in [0, 1] for 16-bit images and DICOM).

    Raises:
        ApiError: 422 for empty, unreadable or truncated data (a DICOM file the run cannot read:
            multi-frame, no pixels, no decoder for its compression, named as in training);
            413 for more than `max_pixels`.
    """
    from graftkit.data import dicom
    from graftkit.data import images as imaging  # the decoders `load_image` uses, on bytes
    from graftkit.errors import DataError

    if not data:
        raise ApiError(422, f"{name}: the file is empty")
    width, height = _dicom_size(data, name) if dicom.is_dicom(data, name) else _image_size(data, name, max_pixels)
    if width * height > max_pixels:
        raise ApiError(413, f"{name}: the image is {width}x{height} = {width * height} pixels; the limit is {max_pixels}")
    if width == 0 or height == 0:
        raise ApiError(422, f"{name}: the image is {width}x{height} pixels")
    if max(width, height) / min(width, height) > _MAX_ASPECT:  # resizing the short side would blow it up
        raise ApiError(422, f"{name}: the image is {width}x{height} pixels; sides more than {_MAX_ASPECT}:1 apart are not accepted")
    if data.startswith(imaging.JPEG_MAGIC) and not bytes(data).rstrip(b"\x00").endswith(b"\xff\xd9"):
        raise ApiError(422, f"{name}: the JPEG data is truncated (no end-of-image marker)")
    try:
        return imaging.decode_image_bytes(data, name, channels=channels, window=window)
    except DataError as e:
        if dicom.is_dicom(data, name):  # the DICOM message already names the file, the problem and the fix
            raise ApiError(422, e.problems[0]) from None
        raise ApiError(422, f"{name}: not a readable image ({str(e.__cause__ or e.problems[0])[:160]})") from None


def _image_size(data: bytes, name: str, max_pixels: int) -> tuple[int, int]:
    """Width and height from the image header (no pixels decoded), refusing decompression bombs."""
    from PIL import Image, UnidentifiedImageError

    from graftkit.data import images as imaging

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=imaging.PIL_FORMATS) as im:
                return im.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ApiError(413, f"{name}: the image has too many pixels; the limit is {max_pixels}") from None
    except UnidentifiedImageError:
        raise ApiError(422, f"{name}: not an image in a known format; send JPEG, PNG, WebP, GIF, BMP, TIFF or DICOM") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise ApiError(422, f"{name}: not a readable image ({str(e)[:160]})") from None


def _dicom_size(data: bytes, name: str) -> tuple[int, int]:
    """Width and height (`Columns`, `Rows`) from a DICOM header, without its pixel data."""
    try:
        import pydicom
    except ImportError:
        raise ApiError(422, f"{name}: reading DICOM needs pydicom on the server: pip install pydicom") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a damaged header is answered below, not logged
            ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=True)
        width, height = int(ds.get("Columns", 0) or 0), int(ds.get("Rows", 0) or 0)
    except Exception as e:  # noqa: BLE001 - pydicom raises many types for a damaged header
        raise ApiError(422, f"{name}: not a readable DICOM file ({str(e).splitlines()[0][:160] if str(e) else type(e).__name__})") from None
    if not width or not height:
        raise ApiError(422, f"{name}: the DICOM header has no image size (Rows/Columns): a truncated file, or one without an image (report, plan)")
    return width, height


# ----------------------------------------------------------------------------------------------
# Model card, OpenAPI fragments, web files


def model_card(run_dir: Path, predictor: Any, backend: str, limits: ServeLimits) -> dict[str, Any]:
    """What `GET /info` returns: the run's task, classes, metrics and input spec, from its files."""
    from graftkit.rundir import graftkit_version

    run_spec = predictor.meta  # the run's RunSpec
    metrics = read_run_json(run_dir / "metrics.json") if (run_dir / "metrics.json").is_file() else {}
    val = metrics.get("val") or {}
    scalars = {k: v for k, v in val.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    pre = run_spec.preprocess
    if predictor.modality == "text":
        spec = {"kind": "text", "content_type": "application/json", "body": {"text": "string"}, "max_tokens": pre.get("max_length")}
    elif predictor.modality == "audio":
        spec = {"kind": "audio", "content_type": "multipart/form-data (field 'file') or a raw audio/* body", "sample_rate": pre.get("sample_rate"),
                "max_seconds": pre.get("max_seconds"), "formats": ["wav", "flac", "ogg", "mp3"]}  # fmt: skip
    else:
        spec = {"kind": "image", "content_type": "multipart/form-data (field 'file')", "input_size": pre.get("input_size"),
                "formats": ["jpeg", "png", "webp", "gif", "bmp", "tiff", "dicom"], "channels": int(pre.get("in_chans", 3))}  # fmt: skip
        if pre.get("window") is not None:
            spec["window"] = {"centre": pre["window"][0], "width": pre["window"][1]}
    parity = run_dir / "export" / "parity.json"
    return {
        "name": run_dir.name,
        "task": run_spec.task["name"],
        "modality": predictor.modality,
        "classes": list(predictor.classes),
        "model": {"id": run_spec.model.model_id, "arch": run_spec.model.arch, "strategy": run_spec.strategy},
        "metrics": {"val": scalars, "per_class": val.get("per_class") or {}, "test": {k: v for k, v in (metrics.get("test") or {}).items() if isinstance(v, (int, float))}},
        "data": {k: run_spec.data.get(k) for k in ("totals", "split")},
        "input": spec,
        "limits": asdict(limits),
        "backend": backend,
        "export": read_run_json(parity, fix=f"export the run again (`graft export {run_dir}`)") if parity.is_file() else None,
        "created": run_spec.created,
        "graftkit_version": graftkit_version(),
    }


_ERROR_SCHEMA = {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}
_PREDICT_SCHEMA = {
    "type": "object",
    "properties": {"predictions": {"type": "array", "items": {"type": "object", "properties": {
        "input": {"type": "string"}, "label": {"type": "string"}, "score": {"type": "number"},
        "top_k": {"type": "array", "items": {"type": "object", "properties": {"label": {"type": "string"}, "score": {"type": "number"}}}},
    }}}},
    "required": ["predictions"],
}  # fmt: skip


def _request_body(text: bool, limits: ServeLimits) -> dict[str, Any]:
    if text:
        one = {"type": "string", "minLength": 1, "maxLength": limits.max_text_chars}
        schema = {"oneOf": [
            {"type": "object", "properties": {"text": one}, "required": ["text"], "additionalProperties": False},
            {"type": "object", "properties": {"texts": {"type": "array", "items": one, "minItems": 1, "maxItems": limits.max_texts}},
             "required": ["texts"], "additionalProperties": False},
        ]}  # fmt: skip
        return {"required": True, "content": {"application/json": {"schema": schema}}}
    binary = {"type": "string", "format": "binary"}
    return {
        "required": True,
        "content": {
            "multipart/form-data": {"schema": {"type": "object", "properties": {"file": binary}, "required": ["file"]}},
            "image/jpeg": {"schema": binary},
            "image/png": {"schema": binary},
            "application/dicom": {"schema": binary},
        },
    }


def _web_file(name: str) -> bytes:
    return (resources.files("graftkit.deploy") / "web" / name).read_bytes()


def serve(
    run_dir: str | Path, *, host: str = "127.0.0.1", port: int = 8080, backend: str = "torch", max_batch: int = 16, max_wait_ms: float = 5.0,
    precision: str = "auto", channels_last: bool | None = None,
) -> None:
    """Serve a run with uvicorn until interrupted (`graft serve`).

    Args:
        run_dir: A finished run directory.
        host: Interface to listen on (`0.0.0.0` for every interface).
        port: TCP port.
        backend: `torch`, `onnx` or `onnx-int8`.
        precision: `torch` backend: `auto`, `fp32` or `bf16` (see `graftkit.load`).
        channels_last: `torch` backend: CNN memory format (None: the run's, else per model).
        max_batch: Most inputs the model runs at once.
        max_wait_ms: How long a batch waits for more requests.
    """
    import uvicorn

    from graftkit.engine.progress import info

    sock = listen_socket(host, port)  # the port is taken (or refused) before anything else happens
    try:
        app = create_app(run_dir, backend=backend, max_batch=max_batch, max_wait_ms=max_wait_ms, precision=precision, channels_last=channels_last)
        shown = "localhost" if host in ("0.0.0.0", "127.0.0.1", "::") else host
        info(f"serving {run_dir} ({backend}) on http://{shown}:{port}/  (API: /predict, /info, /health, /docs)")
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        server.run(sockets=[sock])
    finally:
        sock.close()


def listen_socket(host: str, port: int) -> Any:
    """A TCP socket bound to `host:port` and listening.

    Raises:
        ConfigError: the port is out of range, in use, or not allowed (the message says which).
    """
    import socket

    if not 1 <= port <= 65535:
        raise ConfigError(f"--port {port}: a port is 1 to 65535")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as e:
        sock.close()
        why = "another program is using it" if e.errno in (errno.EADDRINUSE,) else (e.strerror or str(e))
        raise ConfigError(f"cannot listen on {host}:{port}: {why}. Choose another --port (or --host).") from None
    return sock
