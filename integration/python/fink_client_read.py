"""Read a topic with fink-client's own AlertConsumer, as a Fink user would,
and print the decoded alerts as JSON lines (bytes as base64).

usage: fink_client_read.py TOPIC USER PASSWORD GROUP BOOTSTRAP N TIMEOUT [CA_FILE]
With CA_FILE, over SASL_SSL: fink-client 12 has no TLS setting (it always
asks for sasl_plaintext), so its Kafka configuration gets TLS added; the
consumer and its decoding stay fink-client's own.
exit 0: N alerts read; 3: the broker refused (printed as REFUSED: ...); 4: timeout
"""
import base64
import datetime
import json
import sys
import time

import fink_client.consumer
from fink_client.consumer import AlertConsumer

topic, user, password, group, bootstrap, n, timeout = sys.argv[1:8]
n, timeout = int(n), float(timeout)
if len(sys.argv) > 8:
    ca = sys.argv[8]
    plain = fink_client.consumer._get_kafka_config

    def with_tls(config):
        c = plain(config)
        c["security.protocol"] = "sasl_ssl"
        c["ssl.ca.location"] = ca
        return c

    fink_client.consumer._get_kafka_config = with_tls


def default(o):
    if isinstance(o, (bytes, bytearray)):
        return base64.b64encode(o).decode()
    if isinstance(o, (datetime.datetime, datetime.date)):
        return o.isoformat()
    return str(o)


config = {"username": user, "password": password, "group.id": group, "bootstrap.servers": bootstrap}
got = 0
deadline = time.time() + timeout
with AlertConsumer([topic], config, survey="ztf") as consumer:
    while got < n and time.time() < deadline:
        try:
            t, alert, key = consumer.poll(1.0)
        except Exception as e:  # fink-client raises on Kafka errors (authorization, ...)
            print("REFUSED: {}".format(e))
            sys.exit(3)
        if alert is None:
            continue
        print(json.dumps(alert, default=default))
        got += 1
sys.exit(0 if got >= n else 4)
