"""Ranked-list pictures: a query, then its top-k gallery matches framed green (right) or red.

Without identities (`correct=None`, as in `reid rank`) the matches get a neutral grey frame.
`draw_queries` draws a few queries of an evaluated test set (the `rerank` stage's pictures).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from reid.io import atomic_path

GREEN = (40, 170, 60)
RED = (210, 40, 40)
QUERY = (40, 90, 200)
NEUTRAL = (120, 120, 120)


def ranked_gallery(
    distances: np.ndarray,
    q_pid: int,
    q_camid: int,
    g_pids: np.ndarray,
    g_camids: np.ndarray,
    top_k: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the top-k gallery entries for one query and whether each is a true match.

    Same-identity-same-camera entries and junk (pid -1) are skipped, as in evaluation.
    """
    order = np.argsort(distances, kind="stable")
    keep = ~(((g_pids[order] == q_pid) & (g_camids[order] == q_camid)) | (g_pids[order] == -1))
    order = order[keep][:top_k]
    return order, g_pids[order] == q_pid


def draw_ranked_list(
    query_path: str | Path,
    gallery_paths: Sequence[str | Path],
    correct: Sequence[bool] | None,
    out_path: str | Path,
    *,
    size: tuple[int, int] = (128, 64),
    border: int = 4,
    title: str = "",
    labels: Sequence[str] | None = None,
) -> None:
    """One strip: the query (blue frame), a gap, then each match framed green or red.

    `correct=None` frames every match grey (no identities known); `labels`, one per match
    (e.g. its distance), are written under the tiles.
    """
    height, width = size
    cell_w, cell_h = width + 2 * border, height + 2 * border
    gap, top = 12, 18
    under = 0 if labels is None else 14
    texts = [""] * len(gallery_paths) if labels is None else labels
    if correct is None:
        colours = [NEUTRAL] * len(gallery_paths)
    else:
        colours = [GREEN if ok else RED for ok in correct]
    canvas = Image.new(
        "RGB", ((len(gallery_paths) + 1) * (cell_w + 4) + gap, cell_h + top + 4 + under), "white"
    )
    draw = ImageDraw.Draw(canvas)
    draw.text((2, 2), title, fill=(0, 0, 0))
    items = [(query_path, QUERY, "query", "")] + [
        (p, colour, str(rank), text) for rank, (p, colour, text) in enumerate(
            zip(gallery_paths, colours, texts, strict=True), start=1
        )
    ]
    x = 0
    for index, (path, colour, label, text) in enumerate(items):
        with Image.open(path) as img:
            tile = img.convert("RGB").resize((width, height))
        draw.rectangle([x, top, x + cell_w - 1, top + cell_h - 1], fill=colour)
        canvas.paste(tile, (x + border, top + border))
        draw.text((x + border, top + cell_h - 12), label, fill=(255, 255, 255))
        if text:
            draw.text((x + border, top + cell_h + 2), text, fill=(0, 0, 0))
        x += cell_w + 4 + (gap if index == 0 else 0)
    with atomic_path(out_path) as tmp:
        canvas.save(tmp, format="PNG")


def draw_queries(
    arrays: dict[str, np.ndarray], distmat: np.ndarray, folder: Path, *,
    num_queries: int, top_k: int, name: str, title: str,
) -> list[Path]:
    """Ranked-list pictures of `num_queries` queries spread evenly over the query set.

    `arrays` holds the query and gallery paths, pids and cameras (as `features/<ds>/<b>.npz`),
    `distmat` their (Q, G) distances. `folder` is replaced by one `query<index>_<name>.png` per
    query, titled "<title> query <index>, pid <pid>"; returns the paths written.
    """
    q_pids, g_pids = arrays["query_pids"], arrays["gallery_pids"]
    picks = np.unique(np.linspace(0, len(q_pids) - 1, num_queries).astype(int))
    written = []
    with atomic_path(folder) as tmp:
        tmp.mkdir(parents=True)
        for q in picks:
            order, correct = ranked_gallery(
                distmat[q], q_pids[q], arrays["query_camids"][q], g_pids,
                arrays["gallery_camids"], top_k,
            )
            picture = f"query{q:05d}_{name}.png"
            draw_ranked_list(
                arrays["query_paths"][q], arrays["gallery_paths"][order], correct, tmp / picture,
                title=f"{title} query {q}, pid {q_pids[q]}",
            )
            written.append(folder / picture)
    return written
