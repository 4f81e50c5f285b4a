"""The write side: command handlers (operator actions, and the scan/upload/submit/poll cycle)
and the click CLI that drives them (``python -m commands --help``)."""
