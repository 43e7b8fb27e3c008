"""The server under mixed load: large re-rank requests with small ones arriving behind them.

Per ``--batch-token-budget`` setting, the app (the bundled default, in this process, over ASGI)
receives ``--big`` TREC DL 2019 requests at once (one query and its BM25 top-100 each), and
while they run one small request (2 passages) every ``--gap`` seconds. Reported: the large
requests' throughput (pairs/s until the last one is answered) and the small requests' latency
(median and largest). The settings run in turns, each first equally often (ABC, BCA, CAB...), on
one loaded model whose embedding memory is cleared before each; compare them within a run.

    python benchmarks/server_load.py                       # budgets 65536, 16384, 8192; 2 rounds
    python benchmarks/server_load.py --budgets 65536 16384 8192 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path
from typing import Any

import httpx
from _cli import run  # benchmarks/ is on sys.path

from semrank import Reranker
from semrank.eval import load_candidates
from semrank.rerank._prepared import forget_windows
from semrank.server import ServerConfig, create_app

DL19 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "eval" / "trec-dl-2019"


async def one_round(reranker: Reranker, budget: int, lists: list, args: Any) -> dict[str, float]:
    # Cold, as the other settings: the bi-encoder remembers the windows it embedded, so a
    # setting run after another on the same passages would skip half the work.
    forget_windows(reranker)
    config = ServerConfig(batch_token_budget=budget, cache_size=0, request_timeout_s=0)
    app = create_app(config, rerankers={"default": reranker})
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://b", timeout=None) as c:
            return await _load(c, lists, args)


async def _load(client: httpx.AsyncClient, lists: list, args: Any) -> dict[str, float]:
    async def post(query: str, documents: list[str]) -> float:
        started = time.perf_counter()
        response = await client.post("/v1/rerank", json={"query": query, "documents": documents})
        response.raise_for_status()
        return time.perf_counter() - started

    started = time.perf_counter()
    big = [asyncio.create_task(post(cl.query, [hit.text for hit in cl.hits])) for cl in lists]
    small: list[float] = []
    while not all(task.done() for task in big):
        small.append(await post(lists[0].query, [hit.text for hit in lists[0].hits[:2]]))
        await asyncio.sleep(args.gap)
    await asyncio.gather(*big)
    elapsed = time.perf_counter() - started
    pairs = sum(len(cl.hits) for cl in lists)
    return {
        "pairs_per_s": pairs / elapsed,
        "small_p50_s": statistics.median(small),
        "small_max_s": max(small),
        "small_count": len(small),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", nargs="+", type=int, default=[65_536, 16_384, 8_192])
    parser.add_argument("--big", type=int, default=4, help="large requests sent at once")
    parser.add_argument("--gap", type=float, default=0.5, help="seconds between small requests")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    lists = load_candidates(DL19 / "bm25-top100.json.gz")
    reranker = Reranker()
    asyncio.run(one_round(reranker, args.budgets[0], lists[:1], args))  # warm-up
    rows: dict[int, list[dict[str, float]]] = {budget: [] for budget in args.budgets}
    for round_index in range(args.rounds):
        start = round_index * args.big % len(lists)
        chosen = (lists + lists)[start : start + args.big]
        shift = round_index % len(args.budgets)  # each setting goes first equally often
        order = args.budgets[shift:] + args.budgets[:shift]
        for budget in order:
            rows[budget].append(asyncio.run(one_round(reranker, budget, chosen, args)))
    print("| --batch-token-budget | large requests pairs/s | small p50 s | small max s | n |")
    print("|---|---|---|---|---|")
    for budget, results in rows.items():
        median = {key: statistics.median(r[key] for r in results) for key in results[0]}
        print(
            f"| {budget} | {median['pairs_per_s']:.1f} | {median['small_p50_s']:.2f} | "
            f"{median['small_max_s']:.2f} | {int(median['small_count'])} |"
        )


if __name__ == "__main__":
    run(main)
