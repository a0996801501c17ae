#!/usr/bin/env python3
"""Copies a module written by hasten-compile --compile-to without the marks
the driver adds for resuming (hasten.stage, hasten.kv_plans on the module),
so that it can be compared with what hasten-opt's pipelines print.

usage: drop_stage_marks.py IN OUT
"""
import re
import sys

text = open(sys.argv[1], encoding="utf-8").read()
text = re.sub(r"hasten\.kv_plans = \{(?:[^{}]|\{[^{}]*\})*\}, ", "", text, count=1)
text = re.sub(r'hasten\.stage = "\w+", ', "", text, count=1)
text = re.sub(r', hasten\.stage = "\w+"', "", text, count=1)
open(sys.argv[2], "w", encoding="utf-8").write(text)
