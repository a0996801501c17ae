#!/usr/bin/env python3
"""Runs greedy generation, then again with the fifth id (the third generated
token) as a stop token, and prints the second run's id line and stderr.

usage: stop_token.py HASTEN_RUN MODULE"""
import subprocess
import sys

run, module = sys.argv[1], sys.argv[2]
base = [run, module, "--generate", "--prompt-ids", "5,6", "--max-new-tokens", "24",
        "--print-ids", "--quiet"]
greedy = subprocess.run(base, capture_output=True, text=True, check=True).stdout
ids = greedy.split("ids: ")[1].strip().split(",")
stopped = subprocess.run(base + ["--stop-ids", ids[4]], capture_output=True, text=True, check=True)
print("stop id", ids[4])
print(stopped.stdout.strip())
print(stopped.stderr.strip())
