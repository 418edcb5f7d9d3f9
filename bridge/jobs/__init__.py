"""Scheduled jobs on APScheduler: each run recorded in the store."""
