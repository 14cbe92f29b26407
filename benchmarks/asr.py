"""Speech recognition transfer: Whisper tiny.en on the real Asterisk English prompts (one speaker,
8 kHz telephone audio; `apt-get install asterisk-core-sounds-en-wav asterisk-core-sounds-en`),
zero-shot vs fine-tuned with `--task asr`, scored with the shipped transcripts.

- held-out test: every third prompt (the same third as `benchmarks/audio.py whisper`);
- dev: every tenth of the rest, used only to choose the learning rate;
- train: the remaining prompts (at most `--train-limit`).
Clips longer than Whisper's 30 s window, and the `silence/` files (transcribed as a
description, "(1 second of silence)"), are left out. Zero-shot and fine-tuned transcripts come
from the same decoding (greedy, KV-cached, fp32) and the same normalisation
(`graftkit.tasks.asr.normalise`: lowercase, [notes] and punctuation removed, digits spelled out).
It also times the KV-cached decoding against the old loop that re-ran the decoder on the whole
prefix for every token (alternating order, `--rounds` rounds).

    OMP_NUM_THREADS=1 python benchmarks/asr.py --train-limit 300 --epochs 1 --lrs 3e-5,1e-4
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import statistics
import time
from pathlib import Path

import torch

ASTERISK = Path("/usr/share/asterisk/sounds/en_US_f_Allison")
TRANSCRIPTS = Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz")


def prompts() -> tuple[list[tuple[Path, str]], int]:
    """(wav, transcript) for every prompt with a file and a non-empty normalised transcript, and
    how many were left out for being longer than 30 s."""
    import soundfile as sf

    from graftkit.tasks.asr import normalise

    rows, long = [], 0
    for line in gzip.decompress(TRANSCRIPTS.read_bytes()).decode("utf-8", "replace").splitlines():
        name, sep, text = line.partition(":")
        path = ASTERISK / f"{name.strip()}.wav"
        described = text.strip().startswith("(") and text.strip().endswith(")")  # `silence/N: (N seconds of silence)`: nothing said
        if sep and not line.startswith(";") and path.is_file() and normalise(text) and not described:
            if sf.info(str(path)).duration > 30.0:
                long += 1
                continue
            rows.append((path, text.strip()))
    return rows, long


def uncached_greedy(bb, waves: list[torch.Tensor], max_new_tokens: int = 96) -> list[str]:
    """The old decoding path (before --task asr): the decoder re-run on the whole prefix at each token."""
    import torch.nn.functional as F

    out = []
    with torch.inference_mode():
        for w in waves:
            feats = bb.input_features(F.pad(w, (0, bb.mel.num_samples - len(w)))[None])
            enc = bb.model.model.encoder(feats).last_hidden_state
            tokens = torch.tensor([bb.prompt])
            for _ in range(max_new_tokens):
                nxt = bb.model(encoder_outputs=(enc,), decoder_input_ids=tokens).logits[:, -1].argmax(-1)
                tokens = torch.cat([tokens, nxt[:, None]], 1)
                if int(nxt) == bb.eos_token_id:
                    break
            out.append(bb.tokenizer.decode([t for t in tokens[0, len(bb.prompt) :].tolist() if t < bb.eos_token_id]).strip())
    return out


def speed(bb, waves: list[torch.Tensor], rounds: int) -> dict[str, object]:
    from graftkit.backbones.whisper import transcribe_waveforms

    from _common import alternating, median_spread

    times: dict[str, list[float]] = {"cached": [], "uncached": []}
    got: dict[str, list[list[str]]] = {"cached": [], "uncached": []}
    for _, side in alternating(["cached", "uncached"], rounds):
        t0 = time.perf_counter()
        got[side].append(transcribe_waveforms(bb, waves, num_beams=1, max_new_tokens=96, batch_size=1) if side == "cached" else uncached_greedy(bb, waves))
        times[side].append((time.perf_counter() - t0) / len(waves))
    same = all(a == b for a, b in zip(got["cached"], got["uncached"]))
    med = {k: statistics.median(v) for k, v in times.items()}
    paired = [u / c for c, u in zip(times["cached"], times["uncached"])]  # the speed-up in each round
    return {"seconds_per_prompt": {k: [round(x, 2) for x in v] for k, v in times.items()}, "median": {k: round(v, 2) for k, v in med.items()},
            "median_spread": {k: median_spread(v) for k, v in times.items()}, "speedup": round(med["uncached"] / med["cached"], 2),
            "speedup_paired": median_spread(paired, ".2f", "×"), "same_transcripts": same, "clips": len(waves)}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train-limit", type=int, default=300)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--lrs", default="3e-5,1e-4", help="learning rates to try; the dev split's WER chooses")
    p.add_argument("--strategy", default="partial:5", help="partial:5 = the 4 decoder blocks + final norm (the encoder stays frozen)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--test-limit", type=int, default=None, help="score only the first N held-out prompts (smoke runs)")
    p.add_argument("--speed-clips", type=int, default=8)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--work", default="runs-bench/asr")
    args = p.parse_args()

    import graftkit
    from graftkit.backbones.whisper import transcribe_waveforms
    from graftkit.data.audio import decode_audio
    from graftkit.sources import load_backbone
    from graftkit.tasks.asr import error_rates, worst_utterances

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    rows, long = prompts()
    test = rows[::3][: args.test_limit]
    pool = [r for i, r in enumerate(rows) if i % 3 != 0]
    dev = pool[::10]
    train = [r for i, r in enumerate(pool) if i % 10 != 0][: args.train_limit]
    manifest = work / "asterisk_en.csv"
    with open(manifest, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "text", "split"])
        for split, group in (("train", train), ("val", dev), ("test", test)):
            w.writerows([str(path), text, split] for path, text in group)
    result: dict[str, object] = {"prompts": len(rows), "left_out_over_30s": long, "train": len(train), "dev": len(dev), "test": len(test),
                                 "strategy": args.strategy, "epochs": args.epochs, "threads": torch.get_num_threads()}  # fmt: skip
    print(json.dumps(result), flush=True)

    bb = load_backbone("whisper_tiny_en").eval()
    test_waves = [torch.from_numpy(decode_audio(path, 16000)) for path, _ in test]
    result["decoding_speed"] = speed(bb, test_waves[: args.speed_clips], args.rounds)
    print("speed:", json.dumps(result["decoding_speed"]), flush=True)
    t0 = time.perf_counter()
    hyps = transcribe_waveforms(bb, test_waves, num_beams=1, max_new_tokens=96, batch_size=8)
    refs = [t for _, t in test]
    result["zero_shot_test"] = {**error_rates(refs, hyps), "seconds": round(time.perf_counter() - t0, 1),
                                "worst": worst_utterances([p.name for p, _ in test], refs, hyps, 5)}  # fmt: skip
    print("zero-shot test:", json.dumps(result["zero_shot_test"]), flush=True)
    del bb

    runs = {}
    for lr in [float(x) for x in args.lrs.split(",")]:
        t0 = time.perf_counter()
        run = graftkit.fit(manifest, task="asr", model="whisper_tiny_en", strategy=args.strategy, epochs=args.epochs, lr=lr,
                           batch_size=args.batch_size, num_beams=1, max_new_tokens=96, out=work / f"lr{lr:g}", overwrite=True,
                           offline=True, num_workers=0)  # fmt: skip
        m = run.metrics
        runs[lr] = {"dev_wer": m["val"]["wer"], "dev_cer": m["val"]["cer"], "dev_zero_shot": m["val"].get("zero_shot"), "test_wer": m["test"]["wer"],
                    "test_cer": m["test"]["cer"], "train_seconds": m["train_seconds"], "wall_seconds": round(time.perf_counter() - t0, 1),
                    "test_worst": m["test"]["examples"][:5]}  # fmt: skip
        print(f"lr {lr:g}:", json.dumps(runs[lr]), flush=True)
    chosen = min(runs, key=lambda lr: (runs[lr]["dev_wer"], lr))
    result["fine_tuned"] = {str(k): v for k, v in runs.items()}
    result["chosen_lr"] = chosen
    print(json.dumps({"chosen_lr": chosen, "zero_shot_test_wer": result["zero_shot_test"]["wer"], "fine_tuned_test_wer": runs[chosen]["test_wer"]}))
    (work / "result.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
