"""The transport ceiling for one stream: the very values (and keys) fink
published to SOURCE_TOPIC, read into memory first (not timed), then sent
to DEST_TOPIC with fink's producer settings: transactional (a commit each
second), idempotent, acks=all, zstd level 1, linger.ms 2, an 8 MB queue,
and the stream's partition spreading (the next partition once ~1 MB went
to one). No read, decode, filter or encode: what is left is librdkafka and
the broker. Prints "seconds records bytes".
    python ceiling.py BOOTSTRAP PASSWORD_FILE SOURCE_TOPIC DEST_TOPIC PARTITIONS
"""

import sys
import time

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

bootstrap, password_file, source, dest, partitions = sys.argv[1:6]
partitions = int(partitions)
password = open(password_file).read().strip()
auth = {
    "bootstrap.servers": bootstrap,
    "security.protocol": "SASL_PLAINTEXT",
    "sasl.mechanism": "SCRAM-SHA-512",
    "sasl.username": "admin",
    "sasl.password": password,
}

c = Consumer(
    dict(
        auth,
        **{
            "group.id": "ceiling-%d" % time.time_ns(),
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        },
    )
)
md = c.list_topics(source, timeout=30)
parts = [TopicPartition(source, p, 0) for p in md.topics[source].partitions]
c.assign(parts)
records, ended = [], set()
while len(ended) < len(parts):
    for m in c.consume(num_messages=1000, timeout=1.0):
        if m.error():
            if m.error().code() == KafkaError._PARTITION_EOF:
                ended.add(m.partition())
            continue
        records.append((m.key(), m.value()))
c.close()

p = Producer(
    dict(
        auth,
        **{
            "transactional.id": "ceiling-%d" % time.time_ns(),
            "enable.idempotence": True,
            "acks": "all",
            "compression.type": "zstd",
            "compression.level": 1,
            "linger.ms": 2,
            "queue.buffering.max.kbytes": 8192,
        },
    )
)
p.init_transactions()
t0 = time.time()
p.begin_transaction()
last_commit = t0
partition, in_batch, total = 0, 0, 0
for key, value in records:
    while True:
        try:
            p.produce(dest, key=key, value=value, partition=partition)
            break
        except BufferError:
            p.poll(0.005)
    p.poll(0)
    in_batch += len(value)
    total += len(value)
    if in_batch >= 950_000:
        partition, in_batch = (partition + 1) % partitions, 0
    if time.time() - last_commit >= 1.0:
        p.commit_transaction()
        p.begin_transaction()
        last_commit = time.time()
p.commit_transaction()
print(time.time() - t0, len(records), total)
