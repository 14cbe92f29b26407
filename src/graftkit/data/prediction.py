"""`Prediction`: one input's result, as every task and backend returns it (torch-free, so that
the ONNX client builds the same objects without loading torch)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Prediction:
    """One input's result: the predicted label (a class, `a|b`, a value, or generated text), its
    score, and the top-k list."""

    input: str
    label: str
    score: float
    top_k: list[tuple[str, float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"input": self.input, "label": self.label, "score": self.score, "top_k": [{"label": l, "score": s} for l, s in self.top_k]}
