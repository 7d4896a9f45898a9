"""Known mail providers: their IMAP and SMTP settings and how they want to be logged in to.

Used by ``followupd init`` (chosen from the address's domain, or asked) and by ``followupd doctor`` (to say
what to do about a refused login). docs/providers.md says the same for people.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Provider:
    """One provider's servers (host, port, security) and the password advice for it."""

    key: str
    name: str
    imap_host: str
    imap_port: int
    imap_security: str
    smtp_host: str
    smtp_port: int
    smtp_security: str
    domains: tuple[str, ...]
    password_hint: str
    oauth2: bool = False


GMAIL = Provider(
    "gmail",
    "Gmail / Google Workspace",
    "imap.gmail.com",
    993,
    "tls",
    "smtp.gmail.com",
    465,
    "tls",
    ("gmail.com", "googlemail.com"),
    "Gmail needs an app password (Google Account > Security > 2-Step Verification > App passwords) or"
    " OAuth2 with oauth2_token_command; your normal password is refused.",
    oauth2=True,
)
FASTMAIL = Provider(
    "fastmail",
    "Fastmail",
    "imap.fastmail.com",
    993,
    "tls",
    "smtp.fastmail.com",
    465,
    "tls",
    ("fastmail.com", "fastmail.fm", "fastmail.net", "fastmail.org", "fastmail.us", "fastmail.to"),
    "Fastmail needs an app password (Settings > Privacy & Security > Manage app passwords) with IMAP and"
    " SMTP access.",
)
OUTLOOK = Provider(
    "outlook",
    "Outlook.com / Microsoft 365",
    "outlook.office365.com",
    993,
    "tls",
    "smtp.office365.com",
    587,
    "starttls",
    ("outlook.com", "hotmail.com", "live.com", "msn.com", "outlook.de", "hotmail.co.uk"),
    "Microsoft 365 usually needs OAuth2 (oauth2_token_command); an administrator may have to enable IMAP"
    " and authenticated SMTP for the mailbox. Outlook.com accepts an app password when two-step"
    " verification is on.",
    oauth2=True,
)
ICLOUD = Provider(
    "icloud",
    "iCloud Mail",
    "imap.mail.me.com",
    993,
    "tls",
    "smtp.mail.me.com",
    587,
    "starttls",
    ("icloud.com", "me.com", "mac.com"),
    "iCloud needs an app-specific password (account.apple.com > Sign-In and Security > App-Specific"
    " Passwords).",
)

PROVIDERS: dict[str, Provider] = {p.key: p for p in (GMAIL, FASTMAIL, OUTLOOK, ICLOUD)}
"""Known providers by key; ``other`` (any server) is not one of them."""


def for_address(email: str) -> Provider | None:
    """The provider whose own domain the address is at (``ada@gmail.com`` -> Gmail), else None.

    Addresses on your own domain hosted by a provider cannot be told from the address: ask the user.
    """
    domain = email.rpartition("@")[2].strip().lower()
    return next((p for p in PROVIDERS.values() if domain in p.domains), None)


def for_host(host: str) -> Provider | None:
    """The provider that runs ``host`` (an IMAP or SMTP server name), else None."""
    host = host.strip().lower()
    return next((p for p in PROVIDERS.values() if host in (p.imap_host, p.smtp_host)), None)
