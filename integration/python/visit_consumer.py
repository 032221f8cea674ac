"""Read topics as fink-client's users do (read_committed,
SASL/SCRAM-SHA-512, key = the Avro schema, value = schemaless Avro) and log
when each alert becomes readable: one line per record, "topic id time"
(the id: diaSourceId for Rubin alerts, candid for ZTF ones).

integration/bench_visits.sh and bench_latency.sh join the ids with the
files they landed.
Stops on SIGTERM, flushing what it logged.
    python visit_consumer.py BOOTSTRAP USER PASSWORD_FILE OUT TOPIC...
"""

import io
import json
import signal
import sys
import time

import fastavro
from confluent_kafka import Consumer, TopicPartition

bootstrap, user, password_file, out_path = sys.argv[1:5]
topics = sys.argv[5:]
password = open(password_file).read().strip()

c = Consumer(
    {
        "bootstrap.servers": bootstrap,
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": user,
        "sasl.password": password,
        "group.id": "bench-visits-%d" % time.time_ns(),
        "isolation.level": "read_committed",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "fetch.max.bytes": 64 * 1024 * 1024,
    }
)
md = c.list_topics(timeout=30)
parts = [TopicPartition(t, p, 0) for t in topics for p in md.topics[t].partitions]
c.assign(parts)

stop = False


def on_term(*_):
    global stop
    stop = True


signal.signal(signal.SIGTERM, on_term)
schemas = {}
out = open(out_path, "w")
print("ready", flush=True)
while not stop:
    msgs = c.consume(num_messages=1000, timeout=0.2)
    now = time.time()
    for m in msgs:
        if m.error():
            continue
        key = m.key()
        schema = schemas.get(key)
        if schema is None:
            schema = fastavro.parse_schema(json.loads(key))
            schemas[key] = schema
        rec = fastavro.schemaless_reader(io.BytesIO(m.value()), schema)
        # Rubin alerts are told apart by diaSourceId, ZTF ones by candid.
        sid = rec.get("diaSourceId")
        if sid is None:
            sid = rec.get("candid")
        if sid is None:
            sid = (rec.get("diaSource") or {}).get("diaSourceId", -1)
        out.write("%s %d %.6f\n" % (m.topic(), sid, now))
    if msgs:
        out.flush()
out.close()
c.close()
