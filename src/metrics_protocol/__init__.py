"""Wire format and shared declarations of metrics-server and metrics-tui."""
