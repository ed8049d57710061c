"""Helpers shared by command modules: loading the configuration the same way everywhere."""

from __future__ import annotations

import argparse

from obsloop.config import Config, load_config
from obsloop.logsetup import configure


def config_from(args: argparse.Namespace) -> Config:
    config = load_config(getattr(args, "config", None))
    configure(config.logging.level, config.logging.format)
    return config
