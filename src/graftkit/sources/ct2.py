"""A reader for CTranslate2 `model.bin` files (format version 6), and Whisper's mapping from
CTranslate2's `WhisperSpec` names into transformers' `WhisperForConditionalGeneration`.

File layout (little-endian; ASSETS.md): u32 version, string name, u32 revision, u32 count, then
per variable: string name, u8 rank, u32 × rank dims, u8 dtype (0 f32, 1 i8, 2 i16, 3 i32, 4 f16,
5 bf16), u32 byte count, raw bytes; then u32 alias count and (alias, target) string pairs.
Strings are a u16 length (including a NUL) followed by the bytes.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from graftkit.errors import WeightsMismatchError

_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


def _u(f: BinaryIO, fmt: str) -> int:
    size = struct.calcsize(fmt)
    data = f.read(size)
    if len(data) != size:
        raise WeightsMismatchError(f"{getattr(f, 'name', 'the file')}: truncated CTranslate2 file")
    return struct.unpack("<" + fmt, data)[0]


def _string(f: BinaryIO) -> str:
    n = _u(f, "H")
    return f.read(n).rstrip(b"\0").decode("utf-8")


def read_ct2(path: str | Path) -> tuple[str, dict[str, torch.Tensor]]:
    """Every variable of a CTranslate2 model file, aliases resolved.

    Returns:
        `(spec name, {variable name: tensor})`; bf16 variables come back as bfloat16 tensors.

    Raises:
        WeightsMismatchError: Not a version-6 file, or truncated.

    Example:
        >>> spec, variables = read_ct2(get_model_path() / "model.bin")
        >>> spec, len(variables)
        ('WhisperSpec', 148)
    """
    with open(path, "rb") as f:
        version = _u(f, "I")
        if version != 6:
            raise WeightsMismatchError(f"{path}: CTranslate2 format version {version}; graftkit reads version 6")
        spec = _string(f)
        _u(f, "I")  # revision
        variables: dict[str, torch.Tensor] = {}
        for _ in range(_u(f, "I")):
            name = _string(f)
            rank = _u(f, "B")
            dims = [_u(f, "I") for _ in range(rank)]
            dtype = _u(f, "B")
            nbytes = _u(f, "I")
            raw = f.read(nbytes)
            if len(raw) != nbytes:
                raise WeightsMismatchError(f"{path}: truncated at variable {name}")
            if dtype == 5:
                variables[name] = torch.frombuffer(bytearray(raw), dtype=torch.bfloat16).reshape(dims)
            elif dtype in _DTYPES:
                variables[name] = torch.from_numpy(np.frombuffer(raw, dtype=_DTYPES[dtype]).reshape(dims).copy())
            else:
                raise WeightsMismatchError(f"{path}: variable {name} has unknown dtype code {dtype}")
        for _ in range(_u(f, "I")):  # aliases (Whisper: decoder/projection/weight -> the embeddings)
            alias, target = _string(f), _string(f)
            variables[alias] = variables[target]
    return spec, variables


def _linear(out: dict[str, torch.Tensor], src: dict[str, torch.Tensor], ct2: str, hf: str, bias: bool = True) -> None:
    out[f"{hf}.weight"] = src[f"{ct2}/weight"]
    if bias:
        out[f"{hf}.bias"] = src[f"{ct2}/bias"]


def _norm(out: dict[str, torch.Tensor], src: dict[str, torch.Tensor], ct2: str, hf: str) -> None:
    out[f"{hf}.weight"], out[f"{hf}.bias"] = src[f"{ct2}/gamma"], src[f"{ct2}/beta"]


def _attention(out: dict, src: dict, ct2: str, hf: str, *, fused_qkv: bool) -> None:
    if fused_qkv:  # linear_0 = [Q; K; V]; Whisper's k_proj has no bias (CTranslate2 stores zeros)
        w, b = src[f"{ct2}/linear_0/weight"], src[f"{ct2}/linear_0/bias"]
        for part, (wi, bi) in zip(("q", "k", "v"), zip(w.chunk(3), b.chunk(3))):
            out[f"{hf}.{part}_proj.weight"] = wi
            if part != "k":
                out[f"{hf}.{part}_proj.bias"] = bi
    else:  # cross-attention: linear_0 = Q, linear_1 = [K; V]
        _linear(out, src, f"{ct2}/linear_0", f"{hf}.q_proj")
        w, b = src[f"{ct2}/linear_1/weight"], src[f"{ct2}/linear_1/bias"]
        (wk, wv), (_, bv) = w.chunk(2), b.chunk(2)
        out[f"{hf}.k_proj.weight"], out[f"{hf}.v_proj.weight"], out[f"{hf}.v_proj.bias"] = wk, wv, bv
    _linear(out, src, f"{ct2}/linear_{2 if not fused_qkv else 1}", f"{hf}.out_proj")


def whisper_state_dict(variables: dict[str, torch.Tensor], encoder_layers: int, decoder_layers: int) -> dict[str, torch.Tensor]:
    """CTranslate2 `WhisperSpec` variables → `WhisperForConditionalGeneration` state dict (fp32).

    Raises:
        WeightsMismatchError: A variable the mapping needs is missing.
    """
    out: dict[str, torch.Tensor] = {}
    try:
        for conv in ("conv1", "conv2"):
            _linear(out, variables, f"encoder/{conv}", f"model.encoder.{conv}")
        out["model.encoder.embed_positions.weight"] = variables["encoder/position_encodings/encodings"]
        _norm(out, variables, "encoder/layer_norm", "model.encoder.layer_norm")
        for i in range(encoder_layers):
            c, h = f"encoder/layer_{i}", f"model.encoder.layers.{i}"
            _attention(out, variables, f"{c}/self_attention", f"{h}.self_attn", fused_qkv=True)
            _norm(out, variables, f"{c}/self_attention/layer_norm", f"{h}.self_attn_layer_norm")
            _linear(out, variables, f"{c}/ffn/linear_0", f"{h}.fc1")
            _linear(out, variables, f"{c}/ffn/linear_1", f"{h}.fc2")
            _norm(out, variables, f"{c}/ffn/layer_norm", f"{h}.final_layer_norm")
        out["model.decoder.embed_tokens.weight"] = variables["decoder/embeddings/weight"]
        out["model.decoder.embed_positions.weight"] = variables["decoder/position_encodings/encodings"]
        _norm(out, variables, "decoder/layer_norm", "model.decoder.layer_norm")
        for i in range(decoder_layers):
            c, h = f"decoder/layer_{i}", f"model.decoder.layers.{i}"
            _attention(out, variables, f"{c}/self_attention", f"{h}.self_attn", fused_qkv=True)
            _norm(out, variables, f"{c}/self_attention/layer_norm", f"{h}.self_attn_layer_norm")
            _attention(out, variables, f"{c}/attention", f"{h}.encoder_attn", fused_qkv=False)
            _norm(out, variables, f"{c}/attention/layer_norm", f"{h}.encoder_attn_layer_norm")
            _linear(out, variables, f"{c}/ffn/linear_0", f"{h}.fc1")
            _linear(out, variables, f"{c}/ffn/linear_1", f"{h}.fc2")
            _norm(out, variables, f"{c}/ffn/layer_norm", f"{h}.final_layer_norm")
    except KeyError as e:
        raise WeightsMismatchError(f"the CTranslate2 file has no variable {e.args[0]!r} that Whisper needs") from None
    out["proj_out.weight"] = out["model.decoder.embed_tokens.weight"]  # tied to the token embedding
    return {k: v.float() for k, v in out.items()}
