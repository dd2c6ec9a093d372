"""Launching a rendered deployment folder (docker or process runtime), health waits, doctor.
Only this package imports docker."""
