"""Fink's Spark distribution, filters only: the baseline for fink's catalogue.

Reads the science alerts with Spark 3.5 (pyspark from PyPI, local[2]),
adds the history columns as Fink's distribution does (fink_utils' concat_col,
renamed c<field>c; cstampDatac; linear_fit_slope), then for each ZTF topic
applies fink-filters' own pandas UDF (fink_utils' apply_user_defined_filter)
and counts the kept alerts. Counting instead of writing to Kafka leaves
out the Avro encoding and the producer: the figure is the filters' share,
which is generous to Spark.

    python spark_catalogue.py ALERTS_DIR TOPIC...
prints one JSON line: {"seconds": ..., "startup_seconds": ..., "kept": {topic: n},
"failed": {topic: error}}: a filter that raises loses its topic, as in
Fink's job (fink-broker#1151), and the others go on.
"""

import json
import os
import sys
import time
import warnings

warnings.filterwarnings("ignore")

# Spark's Python workers: this interpreter (fink-filters is installed here).
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
t_start = time.time()
from pyspark.sql import SparkSession  # noqa: E402
from pyspark.sql import functions as F  # noqa: E402
from fink_utils.spark.utils import apply_user_defined_filter, concat_col  # noqa: E402

path, topics = sys.argv[1], sys.argv[2:]
spark = (
    SparkSession.builder.master("local[2]")
    .appName("fink-distribution-filters")
    .config("spark.driver.memory", "2g")
    .config("spark.ui.enabled", "false")
    .config("spark.sql.execution.arrow.pyspark.enabled", "true")
    .getOrCreate()
)
spark.sparkContext.setLogLevel("ERROR")
startup = time.time() - t_start

t0 = time.time()
df = spark.read.format("parquet").option("recursiveFileLookup", "true").load(path)
# Fink's distribution (fink-broker): history columns, then the filters.
for c in ["jd", "fid", "magpsf", "sigmapsf", "diffmaglim", "magnr", "sigmagnr", "isdiffpos"]:
    df = concat_col(df, c, prefix="c")
    df = df.withColumnRenamed("c" + c, "c" + c + "c")
df = df.withColumn("cstampDatac", df["cutoutScience.stampData"])
if "lc_features_r" in df.columns:
    df = df.withColumn("linear_fit_slope", F.col("lc_features_r.linear_fit_slope"))
kept, failed = {}, {}
for t in topics:
    f = "fink_filters.ztf.livestream.filter_{0}.filter.{0}".format(t)
    try:
        kept[t] = apply_user_defined_filter(df, f).count()
    except Exception as e:  # noqa: BLE001 (as in Fink's job, the topic is lost)
        failed[t] = str(e).strip().splitlines()[-1][:300]
seconds = time.time() - t0
print(json.dumps({"seconds": seconds, "startup_seconds": startup, "kept": kept, "failed": failed}))
spark.stop()
