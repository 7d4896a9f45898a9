"""Adapters to the outside world: IMAP, local Maildir/mbox, SMTP and the outbox directory.

Each translates its library's exceptions into :mod:`followupd.errors` at its boundary.
"""
