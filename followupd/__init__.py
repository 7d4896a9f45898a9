"""followupd: keep in touch with the people in your mailbox, one give-first follow-up at a time."""

__version__ = "0.1.0"
