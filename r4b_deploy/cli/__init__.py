"""The command-line edge: the only place that parses options and prints."""
