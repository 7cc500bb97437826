from connector.harness.runtime import Runtime


def test_round_trip_through_the_api(runtime: Runtime, connection: dict, unique: str) -> None:
    op = {"action": "listen", "topic": f"{unique}/#", "qos": 1}
    with runtime.listen_in_background(connection, op, count=1) as bg:
        bg.wait_ready(5)
        results = list(runtime.send(connection, {"action": "send", "topic": f"{unique}/x", "qos": 1}, ["hello"]))
    assert [r.status.value for r in results] == ["SUCCESS"]
    assert [d.payload for d in bg.documents] == [b"hello"]
    assert bg.outcome.reason == "count"
