"""Screens other than the dashboard."""
