"""The four jobs behind lncli's commands: ``train``, ``convert``, ``corrupt`` and ``evaluate``.

Each job takes a frozen config (:mod:`lncli.config`), does its work and returns
records (:mod:`lncli.records`); the CLI (:mod:`lncli.cli`) only builds the config
and hands the records to :mod:`lncli.report`.
"""
