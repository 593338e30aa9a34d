"""Parses Prometheus text from stdin with prometheus_client's parser (the reference one in
Python) and prints every sample as JSON: [[name, {labels}, value], ...]. Exits non-zero when the
text does not parse."""

import json
import sys

from prometheus_client.parser import text_string_to_metric_families

samples = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for sample in family.samples:
        samples.append([sample.name, sample.labels, sample.value])
json.dump(samples, sys.stdout)
