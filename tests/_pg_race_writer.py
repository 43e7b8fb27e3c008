"""One writer of test_postgres_store's HNSW race: waits for a start time, then upserts 50."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from semrank.store import open_index
from test_postgres_store import HashingEmbedder

start, writer = float(sys.argv[1]), sys.argv[2]
index = open_index("race", store=os.environ["SEMRANK_TEST_DSN"], embedder=HashingEmbedder())
while time.time() < start:
    time.sleep(0.001)
index.upsert([{"id": f"{writer}-{i}", "text": f"w{i} w7 w9"} for i in range(50)])
print(index.info().vector_search)
