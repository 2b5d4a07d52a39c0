"""Scrapes a Prometheus text endpoint and prints its samples as JSON lines, parsed by
prometheus_client's own text parser: {"family", "type", "name", "labels", "value"}.

Usage: python scrape_metrics.py URL
"""

import json
import sys
import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def main() -> None:
    with urllib.request.urlopen(sys.argv[1], timeout=10) as reply:
        content_type = reply.headers.get("Content-Type", "")
        if not content_type.startswith("text/plain"):
            sys.exit(f"unexpected Content-Type {content_type!r}")
        text = reply.read().decode("utf-8")
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            print(json.dumps({
                "family": family.name,
                "type": family.type,
                "name": sample.name,
                "labels": sample.labels,
                "value": sample.value,
            }))


if __name__ == "__main__":
    main()
