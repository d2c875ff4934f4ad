"""Intake: platform users, and (later) events from every source."""
