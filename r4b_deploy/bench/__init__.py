"""The benchmark: arrival schedules -> per-request records -> pure metrics -> writers."""
