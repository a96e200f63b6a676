#!/usr/bin/env python3
"""Provenance of data/sample/dotnet-corefx-issues.json (run once by a developer, never at run time).

Converts the first 300 rows of the MIT-licensed dotnet/corefx labelled-issue TSV (see
data/sample/README.md) into GitHub REST issue objects that `github-analysis import` reads.
Usage: scripts/make_sample.py corefx-issues-train.tsv > data/sample/dotnet-corefx-issues.json
"""
import csv
import json
import sys

rows = []
with open(sys.argv[1], newline="", encoding="utf-8") as f:
    for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
        if len(rows) == 300:
            break
        n = int(row["ID"])
        rows.append({
            "url": f"https://api.github.com/repos/dotnet/corefx/issues/{n}",
            "repository_url": "https://api.github.com/repos/dotnet/corefx",
            "html_url": f"https://github.com/dotnet/corefx/issues/{n}",
            "number": n,
            "title": row["Title"],
            "body": row["Description"],
            "state": "open",
            "labels": [{"name": row["Area"], "color": None, "description": None}],
            "user": None,
            "comments": 0,
            "created_at": None,
            "updated_at": None,
            "closed_at": None,
        })
json.dump(rows, sys.stdout, indent=1, ensure_ascii=False)
sys.stdout.write("\n")
