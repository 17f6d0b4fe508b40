"""Parses Prometheus text from stdin with prometheus_client's parser (the reference one) and
prints every sample as JSON: [{"name", "labels", "value", "family", "type"}]."""
import json
import sys

from prometheus_client.parser import text_string_to_metric_families

samples = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for sample in family.samples:
        samples.append({"name": sample.name, "labels": sample.labels, "value": sample.value,
                        "family": family.name, "type": family.type})
json.dump(samples, sys.stdout)
