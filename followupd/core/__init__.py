"""The pure core: decisions about mail, people, meetings and follow-ups.

Nothing in this package does I/O, reads the clock or imports SQLAlchemy, imapclient, aiosmtplib or click.
Time is always passed in as ``now``.
"""
