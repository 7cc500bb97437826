"""The Singer adapter: any installed connector as a Singer tap (its Listen) and target (its Send),
for Singer runtimes such as Meltano (docs/runtimes.md). An optional extra:
``pip install "mqtt-connector[singer]"`` (singer-sdk). Nothing in the SDK or the harness imports it.

Console scripts ``tap-mqtt`` / ``target-mqtt`` (and ``tap-disk`` / ``target-disk`` with the disk
connector), or ``python -m connector.singer tap|target --connector ID``.
"""
