"""Dashboard widgets. None of them does any I/O: the app feeds them snapshots."""
