"""Benchmark-only settings: the product's, with a URLconf that adds a bare view to compare against."""

from __future__ import annotations

from opsportal.settings import *  # noqa: F403

ROOT_URLCONF = "bench.bench_urls"
