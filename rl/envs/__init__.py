"""Environments: tasks with rewards a program can check."""
