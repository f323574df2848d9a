"""Examiner keys, the signed hash-linked audit chain, and bundle verification."""
