"""An app on librdkafka, in a process of its own: produce events as docs/clients.md says.

    python tests/integration/kafka/rdkafka_app.py BOOTSTRAP TOPIC LINES_FILE CODEC

Each line of ``LINES_FILE`` is one message, the key before a tab. The
producer is configured as ``docs/clients.md`` asks of any client: keyed by
unit with the Java client's partitioner (``murmur2_random`` in librdkafka),
acks from all replicas, no idempotence (the embedded broker lacks it), and
batches compressed with ``CODEC`` (``none``, ``gzip``, ``snappy``, ``lz4`` or
``zstd``) as a production app might send them. It prints one JSON
object: how many messages were delivered, how many failed, and librdkafka's
version.

It runs on the librdkafka that the ``confluent-kafka`` wheel bundles, because
Debian's (2.0.2, under ``kcat``) cannot read the embedded broker's
ApiVersions reply; against Apache Kafka both work.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from confluent_kafka import KafkaError, Message, Producer, libversion


def main(argv: list[str]) -> int:
    bootstrap, topic, path, codec = argv[1:]
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "partitioner": "murmur2_random",
            "acks": "all",
            "enable.idempotence": False,
            "compression.type": codec,
            "linger.ms": 20,
        }
    )
    outcome: dict[str, Any] = {"delivered": 0, "failed": []}

    def delivered(err: KafkaError | None, _msg: Message) -> None:
        if err is None:
            outcome["delivered"] += 1
        else:
            outcome["failed"].append(str(err))

    with open(path, "rb") as lines:
        for line in lines:
            key, _, value = line.rstrip(b"\n").partition(b"\t")
            producer.produce(topic, key=key, value=value, on_delivery=delivered)
            producer.poll(0)
    left = producer.flush(60)
    outcome["undelivered"] = left
    outcome["librdkafka"] = list(libversion())
    print(json.dumps(outcome))
    return 0 if not outcome["failed"] and not left else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
