"""The application file `spark-submit` runs: its arguments are an icetide command line.

`icetide spark submit maint run …` hands this file to pyspark's spark-submit against `spark.master`; the
Spark Operator's ScheduledSparkApplication (k8s/maint/scheduled-spark-application.yaml) names it as
`mainApplicationFile`. The command's Spark session then joins the driver spark-submit started.
"""

from __future__ import annotations

import sys

from icetide.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
