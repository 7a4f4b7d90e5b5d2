"""Two real `fgrm serve` replicas, callers on HTTP and gRPC through the client's balancing, one
replica SIGKILLed mid-run (benchmarks/failover.py): no call fails, every result is bit-identical
to what one server alone answered, and the survivor keeps serving both transports.

The servers run with max_batch_rows=1 so that bit-identity is a property of each item alone
(with cross-request batching the floats may move by ~1e-9: benchmarks/failover.py)."""

from __future__ import annotations

from benchmarks.failover import run
from benchmarks.soak import items_pool


def test_killing_one_of_two_replicas_fails_no_call_and_changes_no_result(tmp_path):
    result = run(items_pool()[:8], tmp_path, callers=2, seconds_before=6, seconds_after=8,
                 settings={"max_batch_rows": "1"})
    assert result["failed_calls"] == {}, result
    assert result["mismatched_results"] == {"http": 0, "grpc": 0} and result["max_abs_difference"] == 0.0
    # both replicas served both transports before the kill: the balancing really spread the calls
    for server in ("a", "b"):
        served = result["requests_served_before_kill"][server]
        assert served.get("http", 0) > 0 and served.get("grpc", 0) > 0, result
    # and the survivor carried both after it
    assert result["survivor_alive"] and result["killed_replica_refuses_connections"]
    assert all(v > 0 for v in result["items_per_s_survivor_by_transport"].values()), result
