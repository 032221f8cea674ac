"""Fink's Spark distribution, write action only: the baseline for one
fink stream.

Reads the same alerts with Spark 3.5 (pyspark from PyPI, local[2]) and
writes them to a Kafka topic as Fink's distribution does: fink_utils'
get_kafka_df (every column in one struct, to_avro, a version key), then
Spark's Kafka sink (spark-sql-kafka, the jars of
conf/install_spark_kafka.sh) over SASL/SCRAM-SHA-512 with fink's producer
settings where Spark takes them (acks=all, idempotence, zstd). No filter.
The key is a short version string where fink writes the schema: generous
to Spark. Startup (JVM, session) is timed apart and excluded.

    python spark_write.py JARS ALERTS_DIR BOOTSTRAP PASSWORD_FILE TOPIC
prints one JSON line: {"seconds": ..., "startup_seconds": ..., "records": n}
"""

import json
import os
import sys
import time
import warnings

warnings.filterwarnings("ignore")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
t_start = time.time()
from pyspark.sql import SparkSession  # noqa: E402
from fink_utils.broker.distributionUtils import get_kafka_df  # noqa: E402

jars, path, bootstrap, password_file, topic = sys.argv[1:6]
password = open(password_file).read().strip()
spark = (
    SparkSession.builder.master("local[2]")
    .appName("fink-distribution-write")
    .config("spark.driver.memory", "2g")
    .config("spark.ui.enabled", "false")
    .config("spark.jars", jars)
    .getOrCreate()
)
spark.sparkContext.setLogLevel("ERROR")
startup = time.time() - t_start

t0 = time.time()
df = spark.read.format("parquet").option("recursiveFileLookup", "true").load(path)
out = get_kafka_df(df, "", "fink-broker", "fink-science")
jaas = 'org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="{}";'.format(
    password
)
(
    out.write.format("kafka")
    .option("kafka.bootstrap.servers", bootstrap)
    .option("kafka.security.protocol", "SASL_PLAINTEXT")
    .option("kafka.sasl.mechanism", "SCRAM-SHA-512")
    .option("kafka.sasl.jaas.config", jaas)
    .option("kafka.acks", "all")
    .option("kafka.enable.idempotence", "true")
    .option("kafka.compression.type", "zstd")
    .option("topic", topic)
    .save()
)
seconds = time.time() - t0
records = df.count()
print(json.dumps({"seconds": seconds, "startup_seconds": startup, "records": records}))
