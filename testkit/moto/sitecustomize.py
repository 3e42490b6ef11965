"""Loaded by moto server's Python at start-up (testkit puts this folder on PYTHONPATH).

Corrects moto 5.1 answers that are not what AWS sends and that the Rust SDK rightly refuses,
without changing any behaviour the tests depend on:

- Auto Scaling groups: moto renders CreatedTime as a naive local ISO time
  (`2026-11-21T06:29:09.355260`); AWS sends UTC with a zone (`2026-11-21T06:29:09.355Z`), and
  the SDK's timestamp parser requires one. Seen in moto 5.1.4 and still in 5.2.5.
"""

from datetime import datetime, timezone

try:
    from moto.autoscaling import models as _autoscaling
except Exception:  # moto not importable here: nothing to correct.
    _autoscaling = None

if _autoscaling is not None:
    _original_init = _autoscaling.FakeAutoScalingGroup.__init__

    def _init(self, *args, **kwargs):
        _original_init(self, *args, **kwargs)
        self.created_time = (
            datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        )

    _autoscaling.FakeAutoScalingGroup.__init__ = _init
